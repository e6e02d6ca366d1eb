"""The tick: every key whose next step is due gets it (publish, verify, activate, revoke,
verify the revocation, destroy, remove the tombstone), then every identity whose rotation
is due gets a new key. Each step decides from the projection, performs its side effect and
records the outcome, so a crash anywhere only means the step is done again. Start-up
converges whatever a crash left behind.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime

import structlog

from .. import faults
from ..domain import events as ev
from ..domain.errors import ExternalError, FencedOut, RotatorError
from ..domain.model import IdentityState, KeyState
from ..domain.reasons import Reason
from ..domain.states import Action, State
from .context import Context
from .generation import Generation
from .publishing import Publishing
from .recording import TickReport, key_ids
from .safety import Held, Safety
from .signing import Signing
from .verifying import Verifying
from .watch import Watch

log = structlog.get_logger("rotator")

MAX_PASSES = 8  # per tick: lets a key chain publish -> verify -> activate without waiting

Handler = Callable[[list[KeyState], datetime, TickReport], None]

# Revocations (an emergency's first) and the ESP's own DNS work never wait behind
# verification, the one step that may depend on a customer's DNS. Publishing goes before
# verifying revocations: an emergency's replacements then reach the secondaries while the
# revocations are checked, instead of after (a ping-pong slot is only reused once its
# revocation is verified, so the two never meet at one name). Wiping a private key goes
# last: no mail waits for it, while an emergency's replacements wait for their
# verification (and activation, which follows it in the same step).
ORDER = (
    Action.REVOKE,
    Action.PUBLISH,
    Action.VERIFY_REVOCATION,
    Action.ACTIVATE,
    Action.REMOVE_TOMBSTONE,
    Action.VERIFY,
    Action.DESTROY,
)


class Lifecycle:
    def __init__(
        self,
        ctx: Context,
        generation: Generation,
        publishing: Publishing,
        verifying: Verifying,
        signing: Signing,
        watch: Watch,
        safety: Safety,
    ) -> None:
        self.ctx = ctx
        self.watch = watch
        self.safety = safety
        self._held = Held()
        self._budget: int | None = None  # paced work this tick may still start
        self._waiting: set[str] = set()  # paced work left due (keys and identities)
        self._skip: tuple[Action, ...] = ()  # the steps this pass leaves for later
        self.generation = generation
        self.signing = signing
        self.verifying = verifying
        self.handlers: dict[Action, Handler] = {
            Action.PUBLISH: publishing.publish,
            Action.VERIFY: self._verify,
            Action.ACTIVATE: signing.activate,
            Action.REVOKE: publishing.revoke,
            Action.VERIFY_REVOCATION: verifying.verify_revocation,
            Action.DESTROY: self.destroy,
            Action.REMOVE_TOMBSTONE: publishing.remove_tombstone,
        }

    def tick(self, now: datetime | None = None) -> TickReport:
        """Up to MAX_PASSES passes; each pass reads the clock once (or uses `now`) and
        every handler of that pass decides and records with that one time."""
        report = TickReport()
        # The watch first: a customer's DNS seen fixed again lets this tick's steps use it.
        self.watch.tick(now or self.ctx.clock.now())
        try:
            self._passes(now, report)
        finally:  # what was activated is watched from the next tick on, even after a crash
            self.watch.met(report)
        return report

    def _passes(self, now: datetime | None, report: TickReport) -> None:
        store = self.ctx.store
        held = self._held = self.safety.check_tick(now or self.ctx.clock.now())
        self._budget, self._waiting = held.budget, set()
        # key files the signers kept for workers on their old configuration, grace run out
        self.ctx.signer.sweep()
        for _ in range(MAX_PASSES):
            self.ctx.leader.check()  # a node that stopped leading stops here
            before = report.progressed
            at = now or self.ctx.clock.now()
            # Keys first: a revocation due now frees a ping-pong slot for the generation
            # due now.
            due = self._unheld(store.due_keys(at), at)
            if any(k.compromised and k.next_action is Action.REVOKE for k in due):
                due = self._replacements_first(due, at, report)
            self._run_due(due, at, report)
            idents = store.due_identities(at)
            if held.replacements:  # only first keys and emergencies' replacements go on
                idents = [i for i in idents if not i.active_key or i.emergency_actor]
            idents = [i for i in idents if not self._paced(i, i.rotation_due_at, at)]
            self.generation.generate(
                idents, at, report, between=lambda ids, pooled: self._pass(now, report, ids, pooled)
            )
            if report.progressed == before:
                break
        self.safety.waiting = len(self._waiting)
        if self._waiting:
            log.info("paced", waiting=len(self._waiting), limit=self.safety.limit())

    def _replacements_first(
        self, due: list[KeyState], at: datetime, report: TickReport
    ) -> list[KeyState]:
        """An emergency's revocations are due: its replacements waiting in the key pool
        are recorded first, so that they leave with the revocations (PUBLISH follows
        REVOKE in one pass) and the nameservers take both in one round. A secondary
        takes a first change at once and the next ones only after a pause of its own:
        replacements sent a few hundred milliseconds after the revocations would wait
        for another round. Keys still to be generated come after the revocations."""
        urgent = [i for i in self.ctx.store.due_identities(at) if i.emergency_actor]
        if not urgent:
            return due
        self.generation.generate(urgent, at, report, pooled_only=True)
        return self._unheld(self.ctx.store.due_keys(at), at)

    def _unheld(self, keys: list[KeyState], at: datetime) -> list[KeyState]:
        """The keys whose step goes ahead: scheduled revocations may be held or paced."""
        return [
            k
            for k in keys
            if k.next_action is not Action.REVOKE
            or k.compromised
            or k.emergency_actor
            or not (self._held.revocations or self._paced(k, k.next_action_at, at))
        ]

    def _paced(self, item: KeyState | IdentityState, due: datetime | None, at: datetime) -> bool:
        """Whether routine work (a scheduled replacement or revocation) waits for the pace:
        only work of a policy with a spread is paced, and only once the hour's share is
        used up. Counts what it lets go against the share."""
        if isinstance(item, IdentityState) and (not item.active_key or item.emergency_actor):
            return False
        name = item.key_id if isinstance(item, KeyState) else item.identity
        if name in self._waiting:
            return True
        if self._budget is None or due is None:
            return False
        if not self.safety.spread(item.policy):
            return False
        if self._budget <= 0:
            self._waiting.add(name)
            return True
        self._budget -= 1
        self.safety.started(at, 1)
        return False

    def _pass(
        self, now: datetime | None, report: TickReport, chunk: list[str], pooled: bool
    ) -> None:
        """Between chunks of a key generation: move the recorded keys on meanwhile. After
        a pooled chunk (the pool's keys are all ready at once) only the chunk's own
        publication goes, so that the records leave one chunk after the other without a
        wait between them; verification, which waits for the secondaries, comes in the
        tick's next pass."""
        at = now or self.ctx.clock.now()
        if pooled:
            found = self.ctx.store.keys_by_id(chunk).values()
            keys = [k for k in found if k.next_action_at is not None and k.next_action_at <= at]
            others = tuple(a for a in ORDER if a is not Action.PUBLISH)
            self._run_due(self._unheld(keys, at), at, report, others)
            return
        # An activation rewrites every signer's tables (O(all keys) for a file a signer
        # reads whole): between chunks it runs only when the time since the last one is
        # at least twice what that one took, so rewrites never take over the tick.
        pause = time.monotonic() - self.signing.last_finished
        skip = () if pause >= 2 * self.signing.last_took else (Action.ACTIVATE,)
        self._run_due(self._unheld(self.ctx.store.due_keys(at), at), at, report, skip)

    def next_due(self) -> datetime | None:
        """When the next step is due: the log's next action, except for keys whose servers
        are still propagating, which are looked at again when the verifier says."""
        waits = self.verifying.next_checks()
        times = [t for t in (self.ctx.store.next_due(skip=waits), *waits.values()) if t]
        if not times:
            return None
        # Paced work stays due: wake when the pace lets more go (other work due meanwhile
        # waits for the regular tick) instead of ticking again at once for nothing.
        paced = self.safety.paced_until()
        return max(min(times), paced) if paced else min(times)

    def _run_due(
        self,
        due: list[KeyState],
        now: datetime,
        report: TickReport,
        skip: tuple[Action, ...] = (),
    ) -> None:
        self._skip = skip
        groups: dict[Action, list[KeyState]] = defaultdict(list)
        for key in due:
            if key.next_action is None or key.next_action in skip:
                continue
            try:
                self.ctx.policy(key.policy)
            except RotatorError as exc:
                # One key whose policy file is gone fails its step; the others go on.
                self.ctx.recorder.failed(
                    [key], key.next_action, str(exc), report, now, code=Reason.POLICY_UNAVAILABLE
                )
                continue
            groups[key.next_action].append(key)
        for action in ORDER:
            keys = groups.get(action, [])
            if keys:
                self._run(action, keys, now, report)

    def _run(self, action: Action, keys: list[KeyState], now: datetime, report: TickReport) -> None:
        """A handler over many keys; if it crashes (a bug, or data no check foresaw), the
        keys go one by one, so that the one that crashes it fails alone and the rest go on."""
        try:
            self.handlers[action](keys, now, report)
        except FencedOut:  # this node no longer leads: no step of it is a failure to record
            raise
        except Exception as exc:
            if len(keys) > 1:
                for key in keys:
                    fresh = self.ctx.store.key(key.key_id)
                    if fresh is not None and fresh.next_action is action:
                        self._run(action, [fresh], now, report)
                return
            log.exception("step_crashed", action=action.value, key_id=keys[0].key_id)
            reason = f"internal error: {type(exc).__name__}: {exc}"
            self.ctx.recorder.failed(keys, action, reason, report, now, code=Reason.INTERNAL)

    def _verify(self, keys: list[KeyState], now: datetime, report: TickReport) -> None:
        # A key verified now whose activation is due goes on into the signer in this
        # step, unless this pass leaves activations for later (_pass).
        then = None if Action.ACTIVATE in self._skip else self.signing.activate
        self.verifying.verify(keys, now, report, then)

    def destroy(self, keys: list[KeyState], now: datetime, report: TickReport) -> None:
        recorder = self.ctx.recorder
        wiped = []
        results = self.ctx.keystore.destroy_many([k.key_id for k in keys])
        for key, result in zip(keys, results, strict=True):
            if isinstance(result, ExternalError):
                code = Reason.KEYSTORE
                recorder.failed([key], Action.DESTROY, result.reason, report, now, code=code)
                continue
            wiped.append(key)
        if not wiped:
            return
        faults.point("after-key-wiped")
        events: list[ev.KeyEvent] = [
            ev.KeyDestroyed(
                **key_ids(k, now), tombstone_until=self.ctx.policy(k.policy).tombstone_until(now)
            )
            for k in wiped
        ]
        recorder.outcomes(events, wiped, report, Action.DESTROY, split_on_conflict=True)

    def startup(self) -> list[str]:
        """Converge after any crash: wipe private keys no event refers to (a crash between
        writing a key and recording KeyGenerated) and rewrite the signer from the log."""
        store = self.ctx.store
        wiped = []
        leftovers = self.ctx.keystore.wipe_leftovers()
        if leftovers:
            log.warning("temp_key_files_wiped", count=leftovers)
        # one bulk read of the live key ids (a million keys at start-up); each file that is
        # not among them is then looked up on its own, its row's MAC checked, before it goes
        live = store.live_key_ids()
        for key_id in self.ctx.keystore.stored_ids():
            if key_id in live:
                continue
            key = store.key(key_id)
            # Unknown: KeyGenerated never landed. Destroyed: a leftover that must not exist.
            if key is None or key.state is State.DESTROYED:
                self.ctx.keystore.destroy(key_id)
                wiped.append(key_id)
                log.warning("orphan_key_wiped", key_id=key_id)
        self.materialize(live)
        self.signing.sync_at_startup()
        return wiped

    def materialize(self, live: set[str] | None = None) -> None:
        """Make the local key files of the live keys that only the key store's database
        holds (keys sealed on another node), before any signer reads them: at start-up,
        and when this node takes over. Nothing for a key directory that is the store."""
        if live is None:
            live = self.ctx.store.live_key_ids()
        done = self.ctx.keystore.materialize(live)
        if done.written or done.sealed or done.wiped:
            log.info(
                "key_files_materialized",
                written=len(done.written),
                sealed=len(done.sealed),
                wiped=len(done.wiped),
            )
        for key_id in done.missing:
            log.error("key_missing", key_id=key_id, reason="no sealed copy and no key file")
        for key_id, why in done.unreadable.items():
            log.error("key_unreadable", key_id=key_id, reason=why)
