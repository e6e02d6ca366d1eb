"""What the watch asks: every authoritative address for a key's record, and the customer's
DNS that leads receivers to it. Each answer is sorted into "served as published", "answered
something else" (drift) or "could not be asked" (no verdict: a timeout proves nothing)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from ..domain.errors import ExternalError, InputError
from ..domain.model import IdentityState, KeyState
from ..domain.names import normalize_domain, record_location
from ..domain.selector import validate_selector
from ..domain.states import Mode, State
from ..domain.verification import judge_delegation, judge_one
from ..ports import Observation, RecordChange
from .context import Context
from .customer_dns import CustomerDns, customer_of
from .customer_lanes import CustomerLanes

log = structlog.get_logger("rotator")

AWAITING = "awaiting customer DNS: "
CUSTOMER_MODES = (Mode.NS_DELEGATION, Mode.CNAME, Mode.PING_PONG)
CLIP = 60  # characters of a foreign record quoted in an event


@dataclass(frozen=True)
class KeyVerdict:
    """One key's servers: who answered something else (server, answer), and who could not
    be asked (with why)."""

    wrong: tuple[tuple[str, str], ...] = ()
    unasked: tuple[str, ...] = ()

    def drift(self) -> tuple[str, str]:
        """(server, answered) of DriftDetected: the servers, and their answer (each
        server's own when they differ)."""
        servers = ", ".join(s for s, _ in self.wrong)
        answers = {a for _, a in self.wrong}
        if len(answers) == 1:
            return servers, self.wrong[0][1]
        return servers, "; ".join(f"{s}: {a}" for s, a in self.wrong)


@dataclass(frozen=True)
class DnsVerdict:
    """One identity's customer DNS: the problem (None: in place), or why it could not be
    checked (`unasked`; then `problem` means nothing)."""

    problem: str | None = None
    unasked: str = ""


def watched(key: KeyState, now: datetime) -> bool:
    """Keys whose record receivers still need: active ones, and draining ones inside their
    drain window. A key past it (revocation due or under way, a compromised or withdrawn
    key) is the lifecycle's: its record is about to change on purpose."""
    if key.state is State.ACTIVE:
        return True
    return (
        key.state is State.DRAINING
        and not key.revocation_published
        and key.drain_until is not None
        and key.drain_until > now
    )


def server_label(obs: Observation) -> str:
    return obs.address if obs.nameserver == obs.address else f"{obs.nameserver} ({obs.address})"


def answered(expected: str, obs: Observation, key_only: bool) -> str | None:
    """None if this answer serves the record as published, else what the server said."""
    if judge_one(expected, obs, key_only) is None:
        return None
    if obs.rcode != "NOERROR":
        return obs.rcode
    if not obs.authoritative:
        return "an answer without AA (not authoritative)"
    if not obs.texts:
        return "NODATA (no TXT record)"
    if len(obs.texts) > 1:
        return f"{len(obs.texts)} TXT records"
    text = obs.texts[0]
    return f'"{text[:CLIP]}..."' if len(text) > CLIP else f'"{text}"'


def key_verdict(key: KeyState, observed: list[Observation] | ExternalError) -> KeyVerdict:
    if isinstance(observed, ExternalError):  # the nameserver set itself could not be found
        return KeyVerdict(unasked=(f"{key.zone}: {observed.reason}",))
    if not observed:
        return KeyVerdict(unasked=(f"{key.zone}: no authoritative nameserver found",))
    wrong: list[tuple[str, str]] = []
    unasked: list[str] = []
    for obs in observed:
        label = server_label(obs)
        if obs.error:
            unasked.append(f"{label}: {obs.error}")
            continue
        # a customer-managed record: only its key (k=, p=) is ours to expect
        what = answered(key.record, obs, key.customer_managed)
        if what is not None:
            wrong.append((label, what))
    return KeyVerdict(tuple(sorted(wrong)), tuple(unasked))


def republish_change(key: KeyState) -> RecordChange:
    """The key's record again, at the name derived from its own validated parts (never
    taken from the row alone): an edited projection cannot point an UPDATE elsewhere."""
    name = record_location(
        validate_selector(key.selector),
        normalize_domain(key.domain),
        key.zone,
        bool(key.lookup_name),
    )
    if name != key.record_name:
        raise InputError(f"stored record name {key.record_name!r} is not {name!r}")
    return RecordChange(name, key.ttl, key.record)


class Checks:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.customer_dns = CustomerDns(ctx)
        self.lanes = CustomerLanes("watch-customer-dns")

    def keys(self, keys: Sequence[KeyState]) -> dict[str, KeyVerdict]:
        """Every key's record on every address at once (the probe pipelines the queries,
        each within the probe's own bound)."""
        if not keys:
            return {}
        try:
            observed = self.ctx.probe.observe_many([(k.zone, k.record_name) for k in keys])
        except Exception as exc:  # a bug or data no check foresaw: no verdict, logged
            log.exception("watch_check_crashed")
            why = f"the check failed: {type(exc).__name__}: {exc}"
            return {k.key_id: KeyVerdict(unasked=(why,)) for k in keys}
        return {k.key_id: key_verdict(k, o) for k, o in zip(keys, observed, strict=True)}

    def identities(self, idents: Sequence[IdentityState], now: datetime) -> dict[str, DnsVerdict]:
        """Each within the customer-check deadline, one customer's checks on a bounded
        part of the pool: one customer's dead or slow nameservers stall nobody."""
        outcomes = self.lanes.run(
            idents,
            lambda i: customer_of(i, i.domain),
            lambda i, deadline: self.customer(i, now, deadline),
            self.ctx.customer_check_s,
        )
        verdicts = {}
        for ident, out in zip(idents, outcomes, strict=True):
            if out.unchecked:  # no verdict either way
                verdicts[ident.identity] = DnsVerdict(None, out.unchecked.reason)
            elif isinstance(out.error, ExternalError):  # DNS did not answer
                verdicts[ident.identity] = DnsVerdict(None, out.error.reason)
            elif out.error:  # a bug or data no check foresaw: no verdict, logged
                log.error("watch_check_crashed", exc_info=out.error)
                why = f"the check failed: {type(out.error).__name__}: {out.error}"
                verdicts[ident.identity] = DnsVerdict(None, why)
            else:
                verdicts[ident.identity] = out.value or DnsVerdict()
        return verdicts

    def customer(
        self, ident: IdentityState, now: datetime, deadline: float | None = None
    ) -> DnsVerdict:
        if ident.mode == Mode.NS_DELEGATION:
            view = self.ctx.probe.delegation(ident.zone, deadline)
            if view.error:  # the parent's servers did not answer: no verdict either way
                return DnsVerdict(None, view.error)
            return DnsVerdict(judge_delegation(view, self.ctx.esp_nameservers))
        if ident.mode == Mode.PING_PONG:  # every slot: the next rotation needs the other one
            return DnsVerdict(self.customer_dns.check(ident, deadline))
        if ident.mode == Mode.CNAME:
            # Only the CNAMEs of keys that sign or drain: the customer may pre-create fewer
            # than [cname].count future ones (a notice at generation says so).
            live = [
                k
                for k in self.ctx.store.list_keys(ident.identity)
                if k.lookup_name and watched(k, now)
            ]
            problems = [p for k in live if (p := self.customer_dns.cname_problem(k, deadline))]
            if not problems:
                return DnsVerdict()
            return DnsVerdict(AWAITING + "; ".join(p.removeprefix(AWAITING) for p in problems))
        return DnsVerdict()
