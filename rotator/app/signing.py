"""The signer end: which keys sign which mail (signing entries), activation of verified keys
under the signer lock, and rewriting the signer from the log (start-up, emergencies)."""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from .. import faults
from ..domain import events as ev
from ..domain.errors import FencedOut, RotatorError, SignerError
from ..domain.model import IdentityState, KeyState
from ..domain.names import pattern_problem
from ..domain.policy import Policy
from ..domain.reasons import Reason
from ..domain.states import Action, Role, State
from ..ports import RowBuffer, SignerChange, SigningEntry, SigningRow, TargetResult
from .context import Context
from .recording import TickReport, key_ids, replacement_ids
from .retiring import Retiring, retire_events, retiring
from .signing_set import SigningSet
from .verified_ahead import Ahead

log = structlog.get_logger("rotator")


@dataclass(frozen=True)
class _Switch:
    key: KeyState
    policy: Policy
    old: KeyState | None
    old_policy: Policy | None
    # a mode change that moved d=: the identity this key's identity takes over from, which
    # stops signing as this key starts
    handover: Retiring | None = None


class Signing:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # (log position, rows) of the signing set the last complete write or change
        # rendered, while the targets hold it: the next change patches it
        self.base: tuple[int, RowBuffer] | None = None
        # when the last activation finished and how long it took (time.monotonic)
        self.last_finished = 0.0
        self.last_took = 0.0

    def activate(
        self,
        keys: list[KeyState],
        now: datetime,
        report: TickReport,
        verified: Mapping[str, ev.KeyVerified] | None = None,
    ) -> None:
        """Activate verified keys; `verified`: keys of `keys` verified just now, whose
        KeyVerified is not recorded yet (verified_ahead.py)."""
        # One signer rewrite + reload for every key due now: an emergency over 1,000
        # domains must not reload the signer 1,000 times. The signer lock makes an operator's
        # emergency (another process) and this step write the signer one after the other,
        # each from the state it reads inside the lock.
        started = time.monotonic()
        ahead = Ahead(self.ctx.recorder, report, verified or {}, keys)
        try:
            with self.ctx.signer.locked():
                conflicts = self._activate_locked(keys, now, report, ahead)
                ahead.rest()
        except FencedOut:  # not the leader any more: nothing of it is recorded
            raise
        except Exception:
            # the verifications stand whatever the activation hit (a busy signer lock, a
            # bug): they are recorded, and the activation is a step of its own again
            ahead.rest()
            raise
        self.last_finished = time.monotonic()
        self.last_took = self.last_finished - started
        if conflicts:
            # A key changed under us (e.g. compromised meanwhile): never leave the signer
            # holding what the log says must not sign.
            self.sync()

    def _activate_locked(
        self, keys: list[KeyState], now: datetime, report: TickReport, ahead: Ahead
    ) -> int:
        # O(keys switched): only these keys, their identities and the keys they replace
        # are read; the complete signing set is read only if a target needs it.
        store, recorder = self.ctx.store, self.ctx.recorder
        keys = ahead.states(keys, store.keys_by_id([k.key_id for k in keys]))
        idents = self._identities_for(keys)
        actives = [i.active_key for k in keys if (i := idents.get(k.identity)) and i.active_key]
        olds = store.keys_by_id(actives)
        plan: list[_Switch] = []
        for key in keys:
            ident = idents.get(key.identity)
            if ident is None:  # pragma: no cover - the fold forbids keys without identity
                continue
            if ident.dns_problem and not ident.emergency_actor:
                # the watch saw the customer's DNS break after this key was verified (a
                # standby): it would not be found by receivers; the active key keeps signing
                code = ident.dns_problem_code or Reason.AWAITING_CUSTOMER_DNS
                failing = ahead.record([key])
                recorder.failed(failing, Action.ACTIVATE, ident.dns_problem, report, now, code=code)
                continue
            old = olds.get(ident.active_key) if ident.active_key else None
            try:
                policy = self.ctx.policy(key.policy)
                old_policy = self.ctx.policy(old.policy) if old else None
            except RotatorError as exc:  # a policy file is gone: this key waits, not the rest
                code = Reason.POLICY_UNAVAILABLE
                failing = ahead.record([key])
                recorder.failed(failing, Action.ACTIVATE, str(exc), report, now, code=code)
                continue
            plan.append(_Switch(key, policy, old, old_policy, self._handover(ident, old)))
        if not plan:
            return 0
        added = [e for s in plan for e in self._entries_for(s.key, idents)]
        removed = [e for s in plan if s.old is not None for e in self._entries_for(s.old, idents)]
        for s in plan:
            if s.handover is not None:
                pred = {i.identity: i for i in s.handover.identities}
                removed += [e for k in s.handover.draining for e in self._entries_for(k, pred)]
        leaving = {e.key_id for e in removed} | {s.key.key_id for s in plan}
        # what signs once this batch is recorded: the log's active keys, less the ones
        # this batch retires, plus the ones it activates
        everything = self.signing_set(gone=leaving, added=added, base=self._base())

        # Every target writes, reloads and proves (probe) the new keys; the key is active
        # only when all of them did. A target that lags fails the step, retried with
        # backoff; the targets that did switch sign with a verified key meanwhile, and the
        # old key keeps signing everywhere else: it drains only once the last one switched.
        self.ctx.signer.stamp(None)  # what the targets hold is unknown until this is recorded
        results = self.ctx.signer.change(
            SignerChange(tuple(added), tuple(removed), everything), check=added
        )
        lagging = [r for r in results if not r.ok]
        if lagging:
            reason = "signer targets lagging: " + "; ".join(
                f"{r.target}: {r.detail}" for r in lagging
            )
            details = tuple(r.as_json() for r in results)
            keys = ahead.record([s.key for s in plan])
            code = Reason.SIGNER_LAGGING
            recorder.failed(keys, Action.ACTIVATE, reason, report, now, details, code=code)
            self.stamp_lost()
            return 0
        faults.point("after-signer-written")
        targets = tuple(r.as_json() for r in results)
        batches = [
            ahead.joined(s.key, *self._switch_events(s, idents[s.key.identity], now, targets))
            for s in plan
        ]
        # All in one transaction; if any key moved meanwhile, identity by identity (a new
        # key's activation and its predecessor's drain always land together).
        recorded = batches
        events = [e for batch, _ in batches for e in batch]
        if len(batches) == 1 or not recorder.outcomes(
            events, [k for _, ks in batches for k in ks], report, Action.ACTIVATE
        ):
            recorded = [
                b for b in batches if recorder.outcomes(b[0], b[1], report, Action.ACTIVATE)
            ]
        ahead.verified_with(recorded)
        if len(recorded) == len(batches):
            self.stamp(everything)
        else:
            self.stamp_lost()
        return len(batches) - len(recorded)

    def stamp(self, written: SigningSet | None = None, position: int | None = None) -> None:
        """The targets hold the log's signing set as of `position` (default: now; called
        inside the lock); it is what `written` rendered, if given: the next change
        patches it."""
        if position is None:
            head = self.ctx.store.head()
            position = head[0] if head else 0
        self.ctx.signer.stamp(position)
        self._keep_base(position, written.written if written is not None else None)

    def stamp_lost(self) -> None:
        self._keep_base(0, None)

    def _keep_base(self, position: int, rows: RowBuffer | None) -> None:
        if self.base is not None and self.base[1] is not rows:
            self.base[1].close()
        self.base = (position, rows) if rows is not None else None

    def _base(self) -> RowBuffer | None:
        """The set the last write rendered, if the log and the stamp say the targets
        still hold it: nothing that changes what signs was recorded since (by an
        operator's command, say), and nobody else wrote the targets."""
        if self.base is None:
            return None
        position, rows = self.base
        if self.ctx.signer.stamped() == position and not self.ctx.store.signing_set_changed_since(
            position
        ):
            return rows
        self.stamp_lost()
        return None

    def _identities_for(self, keys: list[KeyState]) -> dict[str, IdentityState]:
        """The identities these keys sign for: their own, and for an ESP key every
        customer that carries its signature."""
        store = self.ctx.store
        out = store.identities_named({k.identity for k in keys})
        for ident in list(out.values()):
            if ident.role == Role.ESP:
                out.update((c.identity, c) for c in store.esp_customers(ident.identity))
        return out

    def _handover(self, ident: IdentityState, old: KeyState | None) -> Retiring | None:
        if not ident.takes_over or old is not None:
            return None
        pred = self.ctx.store.identity(ident.takes_over)
        if pred is None or pred.retired_at is not None:
            return None
        companions = [c for c in self.ctx.store.companions(pred.identity) if not c.retired_at]
        return retiring(self.ctx.store, [pred, *companions])

    def _switch_events(
        self,
        s: _Switch,
        ident: IdentityState,
        now: datetime,
        targets: tuple[dict[str, object], ...],
    ) -> tuple[list[ev.Event], list[KeyState | IdentityState]]:
        events: list[ev.Event] = [
            ev.KeyActivated(
                **replacement_ids(key_ids(s.key, now), ident),
                rotate_at=s.policy.rotate_at(now, ident.identity),
                previous=s.old.key_id if s.old else None,
                generate_at=now if s.policy.standby else None,
                targets=targets,
            )
        ]
        if s.old is not None and s.old_policy is not None:
            events.append(
                ev.DrainStarted(
                    **key_ids(s.old, now),
                    drain_until=s.old_policy.drain_until(now),
                    successor=s.key.key_id,
                )
            )
        basis: list[KeyState | IdentityState] = [s.key, *([s.old] if s.old else [])]
        if s.handover is not None:
            why = f"handed over to {ident.identity} (mode {ident.mode})"
            events += retire_events(s.handover, self.ctx.policy, now, False, "rotator", why)
            basis += s.handover.basis
        return events, basis

    def signing_set(
        self,
        gone: Collection[str] = (),
        unsigned: Collection[str] = (),
        added: Sequence[SigningEntry] = (),
        base: RowBuffer | None = None,
    ) -> SigningSet:
        """What signs, for a complete write: the log's set (or `base`, the set last
        written) less the keys `gone` and the ESP signatures for the patterns `unsigned`,
        plus `added` (see SigningSet)."""
        return SigningSet(self.ctx, self.entries, gone, unsigned, added, base)

    def leaving(self, keys: Iterable[KeyState]) -> list[SigningEntry]:
        """One entry per key, enough to name its files in every target: a key that leaves
        leaves every table, whatever patterns it signed under."""
        return [
            SigningEntry(
                key_id=k.key_id,
                domain=k.domain,
                selector=k.selector,
                key_path=self.ctx.keystore.key_file(k.key_id),
                signing_pattern="",
                algorithm=k.algorithm,
                zone=k.zone,
                record_name=k.record_name,
            )
            for k in keys
        ]

    def entries(self) -> list[SigningEntry]:
        """What the signer must hold: every active key, under its identity's pattern; an
        ESP key also under the pattern of every customer that opted in to its signature."""
        return [e for r in self.ctx.store.signing_rows() if (e := self._entry(r)) is not None]

    def _entries_for(self, key: KeyState, idents: dict[str, IdentityState]) -> list[SigningEntry]:
        ident = idents.get(key.identity)
        if ident is None:
            return []
        if ident.role == Role.ESP:
            patterns = sorted(
                i.signing_pattern for i in idents.values() if i.esp_identity == ident.identity
            )
        else:
            patterns = [ident.signing_pattern]
        rows = [
            SigningRow(
                key.key_id,
                key.domain,
                key.selector,
                key.algorithm,
                key.zone,
                key.record_name,
                pattern,
                ident.role == Role.ESP,
            )
            for pattern in patterns
        ]
        return [e for r in rows if (e := self._entry(r)) is not None]

    def _entry(self, r: SigningRow) -> SigningEntry | None:
        """One signature as the signer gets it, or None (logged) for a pattern that is not
        the identity's own domain: a row edited behind rotator's back never reaches a
        signer table."""
        problem = pattern_problem(r.signing_pattern)
        if problem:
            log.error("signing_entry_refused", key_id=r.key_id, error=problem)
            return None
        return SigningEntry(
            key_id=r.key_id,
            domain=r.domain,
            selector=r.selector,
            key_path=self.ctx.keystore.key_file(r.key_id),
            signing_pattern=r.signing_pattern,
            algorithm=r.algorithm,
            second=r.second,
            zone=r.zone,
            record_name=r.record_name,
        )

    def sync_at_startup(self) -> bool:
        """Rewrite every target unless the stamp says they hold the log's signing set
        already (nothing that changes it was recorded since): a million-key restart need
        not rewrite a million-key table. True if it rewrote them."""
        stamped = self.ctx.signer.stamped()
        head = self.ctx.store.head()
        position = head[0] if head else 0
        in_step = (
            stamped is not None
            and stamped <= position
            and not self.ctx.store.signing_changed_since(stamped)
        )
        if in_step:
            self.ctx.signer.trust()
            log.info("signer_in_step", position=stamped)
            return False
        self.sync()
        return True

    def _unsafe(self, key_id: str) -> bool:
        """Whether a key that left the signer must lose its copies at once rather than
        after the targets' grace: compromised (an emergency whose write failed), destroyed,
        or unknown to the log."""
        key = self.ctx.store.key(key_id)
        return key is None or key.compromised or key.state is State.DESTROYED

    def sync(self) -> list[TargetResult]:
        """Rewrite every signer target from the log. Computed inside the signer lock:
        whoever writes last writes the latest state. SignerError naming the targets that
        could not be written (the others were)."""
        with self.ctx.signer.locked():
            head = self.ctx.store.head()
            self.ctx.signer.stamp(None)
            everything = self.signing_set()
            results = self.ctx.signer.apply(everything, wipe=self._unsafe)
            if all(r.ok for r in results):
                # the position read before the write: a commit meanwhile is not in it
                self.stamp(everything, head[0] if head else 0)
            else:
                self.stamp_lost()
        failed = [r for r in results if not r.ok]
        if failed:
            raise SignerError("; ".join(f"target {r.target}: {r.detail}" for r in failed))
        return results
