"""After an emergency is declared: revocation on every nameserver and the replacements.
A running daemon is woken for it; with none, the command does the work itself. Either
way the command waits until it is done or its deadline passes, and then says exactly what
is still to be done and who will do it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import structlog

from ..domain.errors import AlreadyRunning, RotatorError
from ..domain.model import IdentityState
from ..domain.states import Mode, State
from ..domain.verification import summarize
from .context import Context
from .emergency import EmergencyPlan
from .lifecycle import Lifecycle
from .signing import Signing

log = structlog.get_logger("rotator")
POLL_S = 0.1


@dataclass(frozen=True)
class FollowUp:
    daemon_pid: int | None = None  # a running daemon does the work
    revoked: bool = False  # every compromised key revoked on every nameserver
    replaced: bool = False  # every affected identity has an active key (or a notice)
    left: list[str] = field(default_factory=list)  # what is still to be done, one line each
    resynced: bool = False  # the signer was rewritten here after the declaration could not

    @property
    def done(self) -> bool:
        return self.revoked and self.replaced

    def who(self) -> str:
        if self.daemon_pid is not None:
            return f"the daemon (pid {self.daemon_pid}) keeps at it; follow `rotator status`"
        return (
            "no daemon is running: start it (`rotator run`, or systemctl start rotator) or "
            "run `rotator run --once` until `rotator status` shows them done"
        )


class EmergencyFollowUp:
    def __init__(self, ctx: Context, lifecycle: Lifecycle, signing: Signing) -> None:
        self.ctx = ctx
        self.lifecycle = lifecycle
        self.signing = signing

    def run(self, plan: EmergencyPlan, deadline: float, resync: bool = False) -> FollowUp:
        """Wake the daemon, or do the work here (and rewrite the signer first if `resync`:
        the declaration could not), until done or `deadline` (time.monotonic())."""
        lock = self.ctx.lock
        pid: int | None = None
        held = False
        if lock is not None:
            try:
                lock.acquire()
                held = True
            except AlreadyRunning:
                pid = lock.wake_holder()
        resynced = False
        try:
            while True:
                if held:
                    if resync and not resynced:
                        resynced = self._resync()
                    self._work()
                revoked, replaced = self.progress(plan)
                if (revoked and replaced) or time.monotonic() >= deadline:
                    break
                time.sleep(POLL_S)
        finally:
            if held and lock is not None:
                lock.release()
        left = [] if revoked and replaced else self.left(plan)
        return FollowUp(pid, revoked, replaced, left, resynced)

    def _resync(self) -> bool:
        try:
            self.signing.sync()
        except RotatorError as exc:
            log.error("emergency_signer_rewrite_failed", error=str(exc))
            return False
        return True

    def _work(self) -> None:
        # Nothing that fails here may stop the follow-up: it is retried until the deadline.
        try:
            self.lifecycle.tick()
        except RotatorError as exc:
            log.error("emergency_step_failed", error=str(exc))

    def progress(self, plan: EmergencyPlan) -> tuple[bool, bool]:
        """(every compromised key revoked, every affected identity replaced or noticed)."""
        store = self.ctx.store
        keys = store.keys_by_id([c.key_id for c in plan.compromise])
        revoked = all(
            (k := keys.get(c.key_id)) is not None and k.state in (State.REVOKED, State.DESTROYED)
            for c in plan.compromise
        )
        # replaced: an active key again (a customer-managed key waits for the customer)
        names = {k.identity for k in plan.compromise}
        idents = store.identities_named(names)
        replaced = all((i := idents.get(name)) is not None and _replaced(i) for name in names)
        return revoked, replaced

    def left(self, plan: EmergencyPlan) -> list[str]:
        store = self.ctx.store
        out = []
        for c in plan.compromise:
            key = store.key(c.key_id)
            if key is None or key.state is State.DESTROYED:
                continue
            if key.state is State.REVOKED and not key.attempts:
                continue
            step = key.next_action.value if key.next_action else key.state.value
            why = f": {key.last_error}" if key.last_error else ""
            wait = self.lifecycle.verifying.waits.get(key.key_id)
            if not why and wait is not None:  # servers still propagating: what they answer
                why = f": waiting since {wait.first:%H:%M:%S}: {summarize(wait.lagged)}"
            out.append(f"{key.selector} of {key.domain}: {step} not done yet{why}")
        for name in sorted({k.identity for k in plan.compromise}):
            ident = store.identity(name)
            if ident is None or _replaced(ident):
                continue
            pending = store.key(ident.pending_key) if ident.pending_key else None
            where = f" ({pending.selector} is {pending.state.value})" if pending else ""
            why = f": {pending.last_error}" if pending and pending.last_error else ""
            why = why or (f": {ident.notice}" if ident.notice else "")
            out.append(f"{name}: no active key yet{where}{why}")
        return out


def _replaced(ident: IdentityState) -> bool:
    return bool(ident.active_key) or (ident.mode == Mode.CUSTOMER_KEY and bool(ident.notice))
