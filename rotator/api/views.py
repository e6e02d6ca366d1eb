"""How the API shows identities, keys, records and events: plain JSON, times in ISO 8601
UTC, the same facts `rotator status`, `customer check` and `log --json` print."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from ..bootstrap import App
from ..domain.model import IdentityState, KeyState
from ..domain.states import State
from ..ports import StoredEvent, TargetResult
from ..timeutil import iso


def when(at: datetime | None) -> str | None:
    return iso(at) if at is not None else None


def record(line: str) -> dict[str, Any]:
    """A zone-file line (`name ttl IN TYPE value`) as structured data; a TXT record's
    strings are joined into the one value a DNS panel takes."""
    name, ttl, _cls, rtype, value = line.split(maxsplit=4)
    if rtype == "TXT":
        value = "".join(part for part in value.strip("() ").split('"') if part.strip())
    return {"name": name, "ttl": int(ttl), "type": rtype, "value": value, "zone_line": line}


def key_brief(key: KeyState) -> dict[str, Any]:
    """A key an operation takes out of service: enough to name it."""
    return {"domain": key.domain, "selector": key.selector, "state": key.state.value}


def signer_results(results: Iterable[TargetResult]) -> list[dict[str, Any]]:
    return [{"target": t.target, "ok": t.ok, "detail": t.detail} for t in results]


def key_view(key: KeyState) -> dict[str, Any]:
    return {
        "selector": key.selector,
        "key_id": key.key_id,
        "state": key.state.value,
        "since": when(key.since),
        "algorithm": key.algorithm,
        "next_action": key.next_action.value if key.next_action else None,
        "next_action_at": when(key.next_action_at),
        "attempts": key.attempts,
        "last_error": key.last_error,
        "last_error_code": key.last_error_code.value if key.last_error_code else None,
        "parked": key.parked,
        "drift": key.drift or None,
    }


def problems(ident: IdentityState, keys: list[KeyState]) -> list[dict[str, Any]]:
    """What needs someone: drift, parked steps, the customer's DNS broken, a notice."""
    out: list[dict[str, Any]] = []
    if ident.dns_problem and ident.retired_at is None:
        code = ident.dns_problem_code
        out.append({"kind": "customer_dns_broken", "detail": ident.dns_problem,
                    "code": code.value if code else None})  # fmt: skip
    if ident.notice:
        code = ident.notice_code
        out.append({"kind": "notice", "detail": ident.notice,
                    "code": code.value if code else None})  # fmt: skip
    for k in keys:
        if k.parked:
            out.append({"kind": "parked", "selector": k.selector, "detail": k.last_error,
                        "resume": f"rotator resume {k.domain}"})  # fmt: skip
        if k.drift and k.state in (State.ACTIVE, State.DRAINING):
            out.append({"kind": "drift", "selector": k.selector, "detail": k.drift})
    return out


def awaited(ident: IdentityState, keys: list[KeyState]) -> dict[str, Any] | None:
    """The next step of the identity's newest unfinished key and why it waits."""
    pending = next((k for k in keys if k.key_id == ident.pending_key), None)
    if pending is None:
        if ident.active_key is None and ident.retired_at is None:
            return {"step": "generate", "at": when(ident.rotation_due_at), "why": None}
        return None
    return {
        "step": pending.next_action.value if pending.next_action else None,
        "selector": pending.selector,
        "at": when(pending.next_action_at),
        "why": pending.last_error,
    }


def identity_view(app: App, ident: IdentityState, instructions: bool = True) -> dict[str, Any]:
    keys = [k for k in app.store.list_keys(ident.identity) if k.state is not State.DESTROYED]
    by_id = {k.key_id: k for k in keys}
    active, pending = by_id.get(ident.active_key or ""), by_id.get(ident.pending_key or "")
    out: dict[str, Any] = {
        "identity": ident.identity,
        "domain": ident.domain,
        "customer": ident.customer or None,
        "mode": ident.mode.value,
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


def customer_dns(app: App, ident: IdentityState) -> dict[str, Any]:
    text, lines = app.onboarding.instructions(ident)
    return {"instructions": text, "records": [record(line) for line in lines]}


def event_view(stored: StoredEvent) -> dict[str, Any]:
    """As `rotator log --json` prints it."""
    e = stored.event
    return {
        "position": stored.position,
        "at": iso(e.at),
        "type": type(e).__name__,
        "domain": getattr(e, "domain", None),
        "identity": getattr(e, "identity", None),
        "selector": getattr(e, "selector", None),
        "key_id": getattr(e, "key_id", None),
        "actor": e.actor,
        "origin": e.origin or None,
        "reason": e.reason,
        "payload": e.payload(),
        "hash": stored.hash,
    }
