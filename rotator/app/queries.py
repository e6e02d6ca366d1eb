"""Read models for the operator: status rows, listings, audit log filters. Nothing here
writes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from ..domain.errors import NotFound
from ..domain.model import IdentityState, KeyState
from ..domain.reasons import Reason
from ..domain.states import State
from ..ports import LogFilter, OverviewReader, ProjectionReader


@dataclass(frozen=True)
class StatusRow:
    domain: str
    selector: str
    state: str
    since: datetime | None
    next_action: str
    next_action_at: datetime | None
    attempts: int = 0
    last_error: str | None = None
    key_id: str | None = None
    drift: str = ""  # what a nameserver serves instead of the record (the watch's finding)
    # the identity when it is not the domain itself: a companion (example.com~ed25519)
    identity: str = ""
    code: Reason | None = None  # the kind of last_error (a notice's, a DNS problem's)

    @property
    def name(self) -> str:
        return self.identity or self.domain


@dataclass(frozen=True)
class IdentityRow:
    domain: str
    zone: str
    policy: str
    active_selector: str
    pending_selector: str
    rotation_due_at: datetime | None


class QueryStore(ProjectionReader, OverviewReader, Protocol):
    """The projections, and the rows with a problem without reading every key."""


class Queries:
    def __init__(self, store: QueryStore) -> None:
        self.store = store

    def status(self, domain: str | None = None, show_all: bool = False) -> list[StatusRow]:
        """Every key (destroyed ones with their tombstone gone only with show_all), then
        identities with a notice or without any key yet."""
        want = domain.rstrip(".").lower() if domain else None
        idents = {i.identity: i for i in self.store.identities()}
        keys = (k for k in self.store.list_keys() if not want or k.domain == want)
        return _rows(keys, idents.get, show_all)

    def problem_rows(self) -> list[StatusRow]:
        """The rows of status() that show a failure or a drift, in the same order, from
        the keys with a problem alone (and their identities)."""
        idents: dict[str, IdentityState | None] = {}

        def identity(name: str) -> IdentityState | None:
            if name not in idents:
                idents[name] = self.store.identity(name)
            return idents[name]

        rows = _rows(self.store.problem_keys(), identity, show_all=False)
        return [r for r in rows if r.last_error or r.drift]

    def identity_notices(self) -> list[StatusRow]:
        """Identities that need a word in status: a notice, no key at all yet, or their
        customer's DNS broken since their key went live (the watch's finding)."""
        return _notices(self.store.identities())

    def problem_notices(self) -> list[StatusRow]:
        """The rows of identity_notices() that carry a problem (a notice, broken customer
        DNS), from the identities with one alone."""
        return [r for r in _notices(self.store.problem_identities()) if r.last_error]

    def identities(self) -> list[IdentityRow]:
        out = []
        for i in self.store.identities():
            active = self.store.key(i.active_key) if i.active_key else None
            pending = self.store.key(i.pending_key) if i.pending_key else None
            out.append(
                IdentityRow(
                    i.domain,
                    i.zone,
                    i.policy,
                    active.selector if active else "-",
                    pending.selector if pending else "-",
                    i.rotation_due_at,
                )
            )
        return out

    def customers(self) -> list[IdentityState]:
        return [i for i in self.store.identities() if i.customer]

    def customer(self, name: str) -> list[IdentityState]:
        found = [i for i in self.store.identities() if i.customer == name]
        if not found:
            raise NotFound(f"no customer named {name!r}; see `rotator customer list`")
        return found

    def log_filter(self, flt: LogFilter, customer: str | None = None) -> LogFilter:
        """The audit log filter with a customer standing for every one of its identities
        and the domain in its stored form."""
        identities = flt.identities
        if customer:
            identities = tuple(
                i.identity for i in self.store.identities() if i.customer == customer
            )
            if not identities:
                raise NotFound(f"--customer: no customer named {customer!r}")
        domain = flt.domain.rstrip(".").lower() if flt.domain else None
        return replace(flt, identities=identities, domain=domain)


def _rows(
    keys: Iterable[KeyState],
    identity: Callable[[str], IdentityState | None],
    show_all: bool,
) -> list[StatusRow]:
    """Each key's status row (destroyed ones with their tombstone gone only with show_all)."""
    rows = []
    for k in keys:
        if k.state is State.DESTROYED and k.tombstone_removed and not show_all:
            continue
        nxt, at = (k.next_action.value if k.next_action else "-"), k.next_action_at
        if k.parked:
            nxt = f"{nxt} (parked: `rotator resume {k.domain}`)"
        ident = identity(k.identity)
        if k.state is State.ACTIVE and ident is not None:
            if ident.pending_key:
                nxt, at = "await successor", None
            else:
                nxt, at = "rotate", ident.rotation_due_at
        rows.append(
            StatusRow(
                k.domain,
                k.selector,
                k.state.value,
                k.since,
                nxt,
                at,
                k.attempts,
                k.last_error,
                k.key_id,
                # a finding outlives its key's watch: a revocation verified on every
                # server (or the key's destruction) supersedes it
                k.drift if k.state in (State.ACTIVE, State.DRAINING) else "",
                _other(k.identity, k.domain),
                k.last_error_code,
            )
        )
    return rows


def _notices(identities: Iterable[IdentityState]) -> list[StatusRow]:
    out = []
    for i in identities:
        name = _other(i.identity, i.domain)
        if i.dns_problem and i.retired_at is None:
            out.append(StatusRow(i.domain, "-", "customer DNS", None, "-", None, 0,
                                 i.dns_problem, identity=name,
                                 code=i.dns_problem_code))  # fmt: skip
        if i.notice:
            out.append(StatusRow(i.domain, "-", "notice", None, "rotate", i.rotation_due_at,
                                 0, i.notice, identity=name, code=i.notice_code))  # fmt: skip
        elif i.active_key is None and i.pending_key is None:
            out.append(StatusRow(i.domain, "-", "no key yet", None, "generate",
                                 i.rotation_due_at, identity=name))  # fmt: skip
    return out


def _other(identity: str, domain: str) -> str:
    return identity if identity != domain else ""
