"""An operator's rotation request: a new key on the next tick, or a switch to the standby
key that is already verified. Asking again before the daemon acted changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..domain import events as ev
from ..domain.errors import InputError, NotFound
from ..domain.model import IdentityState, KeyState
from ..domain.names import normalize_domain
from ..domain.states import Action, State
from .context import Context
from .recording import by_operator, key_ids


@dataclass(frozen=True)
class Requested:
    identity: IdentityState
    recorded: bool  # False: the same request was already waiting for the daemon
    switch: bool = False  # a verified standby key takes over (no key generation)
    since: datetime | None = None  # when the waiting request was made


class Rotation:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def request(self, domain: str, actor: str, reason: str) -> Requested:
        """Rotate DOMAIN's key (its primary one, for a policy with two algorithms)."""
        domain = normalize_domain(domain)
        ident = self.ctx.store.identity(domain)
        if ident is None:
            raise NotFound(f"domain {domain} is not managed; add it with `rotator domain add`")
        return self._request(ident, actor, reason)

    def request_companions(
        self, domain: str, actor: str, reason: str
    ) -> list[tuple[IdentityState, Requested | str]]:
        """The same for the second key of a two-algorithm policy (`domain~ed25519`): what
        was requested, or why not (its own rotation already under way)."""
        out: list[tuple[IdentityState, Requested | str]] = []
        for companion in self.ctx.store.companions(normalize_domain(domain)):
            if companion.retired_at is not None:
                continue
            try:
                out.append((companion, self._request(companion, actor, reason)))
            except InputError as exc:
                out.append((companion, str(exc)))
        return out

    def _request(self, ident: IdentityState, actor: str, reason: str) -> Requested:
        store, now = self.ctx.store, self.ctx.clock.now()
        name = ident.identity
        if ident.pending_key is not None:
            pending = store.key(ident.pending_key)
            if pending is not None and pending.state is State.VERIFIED and ident.active_key:
                # A standby key: the rotation is a switch, not a key generation.
                if pending.next_action is Action.ACTIVATE and (
                    pending.next_action_at is not None and pending.next_action_at <= now
                ):
                    return Requested(ident, False, True, pending.since)
                switch = ev.ActivationRequested(**by_operator(key_ids(pending, now), actor, reason))
                self.ctx.recorder.append([switch], [pending])
                return Requested(ident, True, True)
            where = f" ({pending.selector} is {pending.state.value})" if pending else ""
            raise InputError(
                f"a rotation of {name} is already in progress{where}; "
                "wait for it (see `rotator status`)"
            )
        if ident.requested_at is not None:
            # asked for already and not acted on yet: the daemon's next tick does it
            return Requested(ident, False, since=ident.requested_at)
        event = ev.RotationRequested(
            at=now, actor=actor, reason=reason, identity=name, domain=ident.domain
        )
        return Requested(self.ctx.recorder.append([event], [ident]).identities[name], True)

    def resume(self, domain: str, actor: str, reason: str) -> list[KeyState]:
        """Try every parked step of `domain`'s keys again now."""
        domain = normalize_domain(domain)
        if self.ctx.store.identity(domain) is None:
            raise NotFound(f"domain {domain} is not managed; see `rotator status`")
        parked = [k for k in self.ctx.store.list_keys(domain) if k.parked]
        if not parked:
            raise InputError(f"no step of {domain} is parked; nothing to resume")
        now = self.ctx.clock.now()
        events = [ev.StepResumed(**by_operator(key_ids(k, now), actor, reason)) for k in parked]
        result = self.ctx.recorder.append(events, parked)
        return [result.keys[k.key_id] for k in parked]
