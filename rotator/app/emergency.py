"""Emergency rotation after a compromise: the scope an operator names, the plan (keys to
take out of service, standby keys to switch to) and its declaration (the keys leave the
signer before anything else, then the compromise is recorded). The follow-up (revocation,
replacement) is in emergency_followup."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from ..domain import events as ev
from ..domain.errors import NotFound, RotatorError
from ..domain.model import IdentityState, KeyState
from ..domain.names import normalize_domain
from ..domain.states import State
from ..ports import ProjectionReader
from .context import Context
from .keypool import KeyPoolKeeper
from .recording import by_operator, key_ids
from .withdrawal import Withdrawal, Withdrawn

log = structlog.get_logger("rotator")


@dataclass(frozen=True)
class Scope:
    """What an emergency covers; exactly one of these is set."""

    domain: str = ""
    selector: str = ""  # with domain
    customer: str = ""
    policy: str = ""
    everything: bool = False
    # The leak was of the signers' copies, not of rotator's key store: the standby and
    # pooled keys, which never left it, are the way out even for every key.
    keystore_intact: bool = False

    def describe(self) -> str:
        if self.everything:
            return "all keys (key store intact)" if self.keystore_intact else "all keys"
        if self.selector:
            return f"selector {self.selector} of {self.domain}"
        if self.domain:
            return f"domain {self.domain}"
        if self.customer:
            return f"customer {self.customer}"
        return f"policy {self.policy}"

    def identities(self, store: ProjectionReader) -> dict[str, IdentityState]:
        """The identities in scope. A domain's (and its companions') are read alone: an
        emergency on one domain of a million reads one domain."""
        if self.domain:
            name = normalize_domain(self.domain)
            ident = store.identity(name)
            if ident is None:
                raise NotFound(f"domain {name} is not managed; see `rotator status`")
            # the domain's second-algorithm key too (it signs the same mail)
            return {i.identity: i for i in (ident, *store.companions(name))}
        idents = store.identities()
        if self.everything:
            return {i.identity: i for i in idents}
        if self.customer:
            found = {i.identity: i for i in idents if i.customer == self.customer}
        else:
            found = {i.identity: i for i in idents if i.policy == self.policy}
        if not found:
            raise NotFound(f"{self.describe()} matches no managed domain")
        return found


@dataclass(frozen=True)
class EmergencyPlan:
    scope: Scope
    compromise: list[KeyState]
    promote: list[KeyState]


# what declaring an emergency did to the signers
Declared = Withdrawn


class Emergency:
    def __init__(self, ctx: Context, withdrawal: Withdrawal, keypool: KeyPoolKeeper) -> None:
        self.ctx = ctx
        self.withdrawal = withdrawal
        self.keypool = keypool

    def plan(self, scope: Scope) -> EmergencyPlan:
        """Which keys to take out of service now, and which standby keys to switch to."""
        store = self.ctx.store
        idents = scope.identities(store)
        keys = store.list_keys() if len(idents) > 1_000 else [
            k for name in sorted(idents) for k in store.list_keys(name)
        ]  # fmt: skip
        compromise: list[KeyState] = []
        promote: list[KeyState] = []
        for key in keys:
            if key.identity not in idents:
                continue
            if key.state in (State.REVOKED, State.DESTROYED) or key.compromised:
                continue
            if scope.selector and key.selector != scope.selector:
                continue
            is_standby = key.key_id == idents[key.identity].pending_key
            intact = not scope.everything or scope.keystore_intact
            if is_standby and intact and not scope.selector:
                # A standby lives apart from the active key's leak: it is the way out.
                if key.state is State.VERIFIED:
                    promote.append(key)
                continue
            compromise.append(key)
        if not compromise:
            raise NotFound(f"no live key matches {scope.describe()}; nothing to do")
        hit = {k.identity for k in compromise if idents[k.identity].active_key == k.key_id}
        promote = [k for k in promote if k.identity in hit]
        return EmergencyPlan(scope, compromise, promote)

    def declare(self, plan: EmergencyPlan, actor: str, reason: str) -> Declared:
        """Take the keys out of the signer first, then record the compromise, both under
        the signer lock (an activation in the daemon waits and then sees the compromise).
        A signer that cannot be rewritten does not stop the recording: revocation must
        go ahead. A recording that fails after the signer was rewritten is an error that
        says so (the daemon would otherwise put the keys back)."""
        now = self.ctx.clock.now()
        events: list[ev.Event] = [
            ev.KeyCompromised(
                **by_operator(key_ids(k, now), actor, reason), scope=plan.scope.describe()
            )
            for k in plan.compromise
        ]
        events += [
            ev.ActivationRequested(**by_operator(key_ids(k, now), actor, reason))
            for k in plan.promote
        ]
        if plan.scope.everything and not plan.scope.keystore_intact:
            # the key store itself may have leaked: its pooled keys go as the standbys do
            events += self.keypool.discard(actor, reason)
        # the compromised keys' copies go at once, not after the targets' grace
        declared = self.withdrawal.run(
            plan.compromise,
            events,
            plan.compromise + plan.promote,
            wipe=True,
            busy="the emergency was NOT declared, the keys still sign",
            unrecorded=_unrecorded,
        )
        log.warning(
            "emergency",
            scope=plan.scope.describe(),
            keys=len(plan.compromise),
            standbys=len(plan.promote),
            actor=actor,
            reason=reason,
            signer_error=declared.signer_error,
        )
        return declared


def _unrecorded(declared: Withdrawn, exc: RotatorError) -> str:
    done = "were taken out of the signer" if declared.signer_error is None else "are unchanged"
    return (
        f"the compromise was NOT recorded ({exc}); the keys {done}, but the "
        "daemon would sign with them again: fix that and run the command again"
    )
