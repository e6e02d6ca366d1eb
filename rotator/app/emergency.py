"""Emergency rotation after a compromise: the scope an operator names, the plan (keys to
take out of service, standby keys to switch to), its execution (the keys leave the signer
before the command returns) and the follow-up: a running daemon is woken, otherwise the
command itself works until the keys are revoked and replaced, or its deadline passes."""

from __future__ import annotations

import time
from dataclasses import dataclass

import structlog

from ..domain import events as ev
from ..domain.errors import AlreadyRunning, ExternalError, NotFound, SignerError
from ..domain.model import IdentityState, KeyState
from ..domain.names import normalize_domain
from ..domain.states import State
from .context import Context
from .lifecycle import Lifecycle
from .recording import by_operator, key_ids
from .signing import Signing

log = structlog.get_logger("rotator")


@dataclass(frozen=True)
class Scope:
    """What an emergency covers; exactly one of these is set."""

    domain: str = ""
    selector: str = ""  # with domain
    customer: str = ""
    policy: str = ""
    everything: bool = False

    def describe(self) -> str:
        if self.everything:
            return "all keys"
        if self.selector:
            return f"selector {self.selector} of {self.domain}"
        if self.domain:
            return f"domain {self.domain}"
        if self.customer:
            return f"customer {self.customer}"
        return f"policy {self.policy}"

    def identities(self, idents: dict[str, IdentityState]) -> set[str]:
        if self.everything:
            return set(idents)
        if self.domain:
            name = normalize_domain(self.domain)
            if name not in idents:
                raise NotFound(f"domain {name} is not managed; see `rotator status`")
            return {name}
        if self.customer:
            found = {i for i, v in idents.items() if v.customer == self.customer}
        else:
            found = {i for i, v in idents.items() if v.policy == self.policy}
        if not found:
            raise NotFound(f"{self.describe()} matches no managed domain")
        return found


@dataclass(frozen=True)
class EmergencyPlan:
    scope: Scope
    compromise: list[KeyState]
    promote: list[KeyState]


@dataclass(frozen=True)
class FollowUp:
    """What happened after the keys left the signer."""

    daemon_pid: int | None = None  # a running daemon was woken to do the rest
    revoked: bool = False  # every compromised key revoked on every nameserver
    replaced: bool = False  # every affected identity has an active key (or a notice)


class Emergency:
    def __init__(self, ctx: Context, signing: Signing, lifecycle: Lifecycle) -> None:
        self.ctx = ctx
        self.signing = signing
        self.lifecycle = lifecycle

    def plan(self, scope: Scope) -> EmergencyPlan:
        """Which keys to take out of service now, and which standby keys to switch to."""
        store = self.ctx.store
        idents = {i.identity: i for i in store.identities()}
        chosen = scope.identities(idents)
        compromise: list[KeyState] = []
        promote: list[KeyState] = []
        for key in store.list_keys():
            if key.identity not in chosen:
                continue
            if key.state in (State.REVOKED, State.DESTROYED) or key.compromised:
                continue
            if scope.selector and key.selector != scope.selector:
                continue
            is_standby = key.key_id == idents[key.identity].pending_key
            if is_standby and not scope.everything and not scope.selector:
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

    def declare(self, plan: EmergencyPlan, actor: str, reason: str) -> None:
        """Record the compromise (keys leave the signer at once), then rewrite the signer.
        Revocation and replacements follow on the next tick (see follow_up)."""
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
        self.ctx.recorder.append(events, plan.compromise + plan.promote)
        log.warning(
            "emergency",
            scope=plan.scope.describe(),
            keys=len(plan.compromise),
            standbys=len(plan.promote),
            actor=actor,
            reason=reason,
        )
        try:
            self.signing.sync()
        except ExternalError as exc:
            raise SignerError(
                f"keys are marked compromised, but the signer was not rewritten: {exc.reason}; "
                "fix that, then run `rotator run --once` (or restart the daemon)"
            ) from None

    def follow_up(self, plan: EmergencyPlan, deadline: float) -> FollowUp:
        """Wake the daemon for the revocations and replacements; with no daemon running,
        do the work here until it is done or `deadline` (time.monotonic()) passes."""
        lock = self.ctx.lock
        if lock is None:
            return FollowUp()
        try:
            lock.acquire()
        except AlreadyRunning:
            return FollowUp(daemon_pid=lock.wake_holder())
        try:
            revoked = replaced = False
            while time.monotonic() < deadline:
                self.lifecycle.tick()
                revoked, replaced = self.progress(plan)
                if revoked and replaced:
                    break
                time.sleep(0.1)
            return FollowUp(revoked=revoked, replaced=replaced)
        finally:
            lock.release()

    def progress(self, plan: EmergencyPlan) -> tuple[bool, bool]:
        """(every compromised key revoked, every affected identity replaced or noticed)."""
        store = self.ctx.store
        ids = {k.key_id for k in plan.compromise}
        affected = {k.identity for k in plan.compromise}
        revoked = all(
            k.state in (State.REVOKED, State.DESTROYED)
            for k in store.list_keys()
            if k.key_id in ids
        )
        # replaced: an active key again, or a notice saying what it waits for
        replaced = all(
            i.active_key or i.notice for i in store.identities() if i.identity in affected
        )
        return revoked, replaced
