"""What retiring an identity records, shared by offboarding (an operator removes it) and
the handover of a mode change (its successor's first key went live): the active key
drains (or is revoked at once), keys on their way are withdrawn, the identity is retired."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..domain import events as ev
from ..domain.model import IdentityState, KeyState
from ..domain.states import State
from ..ports import PolicySource, ProjectionReader
from .recording import by_operator, key_ids

PENDING = (State.GENERATED, State.PUBLISHED, State.VERIFIED)


@dataclass(frozen=True)
class Retiring:
    identities: list[IdentityState]
    draining: list[KeyState]  # active keys: they drain (or are revoked at once)
    withdrawn: list[KeyState]  # keys that never signed

    @property
    def basis(self) -> list[KeyState | IdentityState]:
        return [*self.identities, *self.draining, *self.withdrawn]


def retiring(store: ProjectionReader, idents: list[IdentityState]) -> Retiring:
    draining, withdrawn = [], []
    for ident in idents:
        for key in store.list_keys(ident.identity):
            if key.key_id == ident.active_key and key.state is State.ACTIVE:
                draining.append(key)
            elif key.state in PENDING and not key.compromised:
                withdrawn.append(key)
    return Retiring(idents, draining, withdrawn)


def retire_events(
    r: Retiring, policy: PolicySource, at: datetime, now: bool, actor: str, reason: str
) -> list[ev.Event]:
    """The events, key events first: the identity's own comes last and leaves nothing due."""
    events: list[ev.Event] = []
    for key in r.draining:
        until = at if now else policy(key.policy).drain_until(at)
        ids = by_operator(key_ids(key, at), actor, reason)
        events.append(ev.DrainStarted(**ids, drain_until=until))
    events += [ev.KeyWithdrawn(**by_operator(key_ids(k, at), actor, reason)) for k in r.withdrawn]
    events += [
        ev.IdentityRemoved(
            at=at, actor=actor, reason=reason, identity=i.identity, domain=i.domain, now=now
        )
        for i in r.identities
    ]
    return events
