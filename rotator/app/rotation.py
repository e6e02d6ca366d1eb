"""An operator's rotation request: a new key on the next tick, or a switch to the standby
key that is already verified."""

from __future__ import annotations

from ..domain import events as ev
from ..domain.errors import InputError, NotFound
from ..domain.model import IdentityState
from ..domain.names import normalize_domain
from ..domain.states import State
from .context import Context
from .recording import by_operator, key_ids


class Rotation:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def request(self, domain: str, actor: str, reason: str) -> IdentityState:
        store, now = self.ctx.store, self.ctx.clock.now()
        domain = normalize_domain(domain)
        ident = store.identity(domain)
        if ident is None:
            raise NotFound(f"domain {domain} is not managed; add it with `rotator domain add`")
        if ident.pending_key is not None:
            pending = store.key(ident.pending_key)
            if pending is not None and pending.state is State.VERIFIED and ident.active_key:
                # A standby key: the rotation is a switch, not a key generation.
                switch = ev.ActivationRequested(**by_operator(key_ids(pending, now), actor, reason))
                self.ctx.recorder.append([switch], [pending])
                return ident
            where = f" ({pending.selector} is {pending.state.value})" if pending else ""
            raise InputError(
                f"a rotation of {domain} is already in progress{where}; "
                "wait for it (see `rotator status`)"
            )
        event = ev.RotationRequested(
            at=now, actor=actor, reason=reason, identity=domain, domain=domain
        )
        return self.ctx.recorder.append([event], [ident]).identities[domain]
