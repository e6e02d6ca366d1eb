"""How the API shows identities, keys, records and events: the answer models of
rotator.api.models, times in ISO 8601 UTC, the same facts `rotator status`,
`customer check` and `log --json` print."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from ..bootstrap import App
from ..domain.model import IdentityState, KeyState
from ..domain.states import State
from ..ports import StoredEvent, TargetResult
from ..timeutil import iso
from .models.base import KeyBrief, SignerResult
from .models.identities import (
    AwaitingKey,
    AwaitingStep,
    CustomerDns,
    Drift,
    IdentityBrief,
    IdentityProblem,
    IdentityView,
    KeyView,
    Notice,
    Parked,
    Record,
)
from .models.operations import EventView


def when(at: datetime | None) -> str | None:
    return iso(at) if at is not None else None


def record(line: str) -> Record:
    """A zone-file line (`name ttl IN TYPE value`) as structured data; a TXT record's
    strings are joined into the one value a DNS panel takes."""
    name, ttl, _cls, rtype, value = line.split(maxsplit=4)
    if rtype == "TXT":
        value = "".join(part for part in value.strip("() ").split('"') if part.strip())
    return Record(name=name, ttl=int(ttl), type=rtype, value=value, zone_line=line)


def key_brief(key: KeyState) -> KeyBrief:
    """A key an operation takes out of service: enough to name it."""
    return KeyBrief(domain=key.domain, selector=key.selector, state=key.state)


def signer_results(results: Iterable[TargetResult]) -> list[SignerResult]:
    return [SignerResult(target=t.target, ok=t.ok, detail=t.detail) for t in results]


def key_view(key: KeyState) -> KeyView:
    return KeyView(
        selector=key.selector,
        key_id=key.key_id,
        state=key.state,
        since=when(key.since),
        algorithm=key.algorithm,
        next_action=key.next_action,
        next_action_at=when(key.next_action_at),
        attempts=key.attempts,
        last_error=key.last_error,
        last_error_code=key.last_error_code,
        parked=key.parked,
        drift=key.drift or None,
    )


def problems(ident: IdentityState, keys: list[KeyState]) -> list[IdentityProblem]:
    """What needs someone: drift, parked steps, the customer's DNS broken, a notice."""
    out: list[IdentityProblem] = []
    if ident.dns_problem and ident.retired_at is None:
        out.append(Notice(kind="customer_dns_broken", detail=ident.dns_problem,
                          code=ident.dns_problem_code))  # fmt: skip
    if ident.notice:
        out.append(Notice(kind="notice", detail=ident.notice, code=ident.notice_code))
    for k in keys:
        if k.parked:
            out.append(Parked(kind="parked", selector=k.selector, detail=k.last_error,
                              resume=f"rotator resume {k.domain}"))  # fmt: skip
        if k.drift and k.state in (State.ACTIVE, State.DRAINING):
            out.append(Drift(kind="drift", selector=k.selector, detail=k.drift))
    return out


def awaited(ident: IdentityState, keys: list[KeyState]) -> AwaitingStep | AwaitingKey | None:
    """The next step of the identity's newest unfinished key and why it waits."""
    pending = next((k for k in keys if k.key_id == ident.pending_key), None)
    if pending is None:
        if ident.active_key is None and ident.retired_at is None:
            return AwaitingKey(step="generate", at=when(ident.rotation_due_at), why=None)
        return None
    return AwaitingStep(
        step=pending.next_action,
        selector=pending.selector,
        at=when(pending.next_action_at),
        why=pending.last_error,
    )


def identity_brief(app: App, ident: IdentityState) -> IdentityBrief:
    """An identity as a page lists it: no instructions (they may need a DNS lookup)."""
    return IdentityBrief(**identity_fields(app, ident, instructions=False))


def identity_view(app: App, ident: IdentityState) -> IdentityView:
    return IdentityView(**identity_fields(app, ident))


def identity_fields(app: App, ident: IdentityState, instructions: bool = True) -> dict[str, Any]:
    """The fields of IdentityView (and of the answers that extend it)."""
    keys = [k for k in app.store.list_keys(ident.identity) if k.state is not State.DESTROYED]
    by_id = {k.key_id: k for k in keys}
    active, pending = by_id.get(ident.active_key or ""), by_id.get(ident.pending_key or "")
    out: dict[str, Any] = {
        "identity": ident.identity,
        "domain": ident.domain,
        "customer": ident.customer or None,
        "mode": ident.mode,
        "policy": ident.policy,
        "zone": ident.zone,
        "signing_pattern": ident.signing_pattern,
        "active_selector": active.selector if active else None,
        "pending_selector": pending.selector if pending else None,
        "rotation_due_at": when(ident.rotation_due_at),
        "rotation_requested_at": when(ident.requested_at),
        "removed_at": when(ident.retired_at),
        "awaiting": awaited(ident, keys),
        "problems": problems(ident, keys),
        "keys": [key_view(k) for k in keys],
    }
    if instructions:
        out["customer_dns"] = customer_dns(app, ident)
    return out


def customer_dns(app: App, ident: IdentityState) -> CustomerDns:
    text, lines = app.onboarding.instructions(ident)
    return CustomerDns(instructions=text, records=[record(line) for line in lines])


def event_view(stored: StoredEvent) -> EventView:
    """As `rotator log --json` prints it."""
    e = stored.event
    return EventView(
        position=stored.position,
        at=iso(e.at),
        type=type(e).__name__,
        domain=getattr(e, "domain", None),
        identity=getattr(e, "identity", None),
        selector=getattr(e, "selector", None),
        key_id=getattr(e, "key_id", None),
        actor=e.actor,
        origin=e.origin or None,
        reason=e.reason,
        payload=e.payload(),
        hash=stored.hash,
    )
