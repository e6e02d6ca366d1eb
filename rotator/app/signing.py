"""The signer end: which keys sign which mail (signing entries), activation of verified keys
under the signer lock, and rewriting the signer from the log (start-up, emergencies)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import structlog

from .. import faults
from ..domain import events as ev
from ..domain.errors import RotatorError, SignerError
from ..domain.model import IdentityState, KeyState
from ..domain.names import pattern_problem
from ..domain.policy import Policy
from ..domain.states import Action, Role, State
from ..ports import SigningEntry, TargetResult
from .context import Context
from .recording import TickReport, key_ids, replacement_ids

log = structlog.get_logger("rotator")


@dataclass(frozen=True)
class _Switch:
    key: KeyState
    policy: Policy
    old: KeyState | None
    old_policy: Policy | None


class Signing:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def activate(self, keys: list[KeyState], now: datetime, report: TickReport) -> None:
        # One signer rewrite + reload for every key due now: an emergency over 1,000
        # domains must not reload the signer 1,000 times. The signer lock makes an operator's
        # emergency (another process) and this step write the signer one after the other,
        # each from the state it reads inside the lock.
        with self.ctx.signer.locked():
            conflicts = self._activate_locked(keys, now, report)
        if conflicts:
            # A key changed under us (e.g. compromised meanwhile): never leave the signer
            # holding what the log says must not sign.
            self.sync()

    def _activate_locked(self, keys: list[KeyState], now: datetime, report: TickReport) -> int:
        store, recorder = self.ctx.store, self.ctx.recorder
        fresh = [store.key(k.key_id) for k in keys]
        keys = [k for k in fresh if k is not None and k.state is State.VERIFIED]
        idents = {i.identity: i for i in store.identities()}
        plan: list[_Switch] = []
        for key in keys:
            ident = idents.get(key.identity)
            if ident is None:  # pragma: no cover - the fold forbids keys without identity
                continue
            old = store.key(ident.active_key) if ident.active_key else None
            try:
                policy = self.ctx.policy(key.policy)
                old_policy = self.ctx.policy(old.policy) if old else None
            except RotatorError as exc:  # a policy file is gone: this key waits, not the rest
                recorder.failed([key], Action.ACTIVATE, str(exc), report, now)
                continue
            plan.append(_Switch(key, policy, old, old_policy))
        if not plan:
            return 0
        retired = {s.old.key_id for s in plan if s.old is not None}
        entries = [e for e in self.entries(idents) if e.key_id not in retired]
        for s in plan:
            entries += self._entries_for(s.key, idents)
        # Every target writes, reloads and proves (probe) the new keys; the key is active
        # only when all of them did. A target that lags fails the step, retried with
        # backoff; the targets that did switch sign with a verified key meanwhile, and the
        # old key keeps signing everywhere else: it drains only once the last one switched.
        checked = [e for s in plan for e in self._entries_for(s.key, idents)]
        results = self.ctx.signer.apply(entries, check=checked)
        lagging = [r for r in results if not r.ok]
        if lagging:
            reason = "signer targets lagging: " + "; ".join(
                f"{r.target}: {r.detail}" for r in lagging
            )
            details = tuple(r.as_json() for r in results)
            recorder.failed([s.key for s in plan], Action.ACTIVATE, reason, report, now, details)
            return 0
        faults.point("after-signer-written")
        targets = tuple(r.as_json() for r in results)
        batches = [self._switch_events(s, idents[s.key.identity], now, targets) for s in plan]
        # All in one transaction; if any key moved meanwhile, identity by identity (a new
        # key's activation and its predecessor's drain always land together).
        recorded = batches
        everything = [e for events, _ in batches for e in events]
        if len(batches) == 1 or not recorder.outcomes(
            everything, [k for _, ks in batches for k in ks], report, Action.ACTIVATE
        ):
            recorded = [
                b for b in batches if recorder.outcomes(b[0], b[1], report, Action.ACTIVATE)
            ]
        return len(batches) - len(recorded)

    @staticmethod
    def _switch_events(
        s: _Switch, ident: IdentityState, now: datetime, targets: tuple[dict[str, object], ...]
    ) -> tuple[list[ev.KeyEvent], list[KeyState]]:
        events: list[ev.KeyEvent] = [
            ev.KeyActivated(
                **replacement_ids(key_ids(s.key, now), ident),
                rotate_at=s.policy.rotate_at(now),
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
        return events, [s.key] + ([s.old] if s.old else [])

    def entries(self, idents: dict[str, IdentityState] | None = None) -> list[SigningEntry]:
        """What the signer must hold: every active key, under its identity's pattern; an
        ESP key also under the pattern of every customer that opted in to its signature."""
        if idents is None:
            idents = {i.identity: i for i in self.ctx.store.identities()}
        out: list[SigningEntry] = []
        for key in self.ctx.store.list_keys(state=State.ACTIVE):
            out += self._entries_for(key, idents)
        return out

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
        out = []
        for pattern in patterns:
            problem = pattern_problem(pattern)
            if problem:  # a row edited behind rotator's back never reaches a signer table
                log.error("signing_entry_refused", key_id=key.key_id, error=problem)
                continue
            out.append(
                SigningEntry(
                    key_id=key.key_id,
                    domain=key.domain,
                    selector=key.selector,
                    key_path=self.ctx.keystore.path(key.key_id),
                    signing_pattern=pattern,
                    algorithm=key.algorithm,
                    second=ident.role == Role.ESP,
                    zone=key.zone,
                    record_name=key.record_name,
                )
            )
        return out

    def sync(self) -> list[TargetResult]:
        """Rewrite every signer target from the log. Computed inside the signer lock:
        whoever writes last writes the latest state. SignerError naming the targets that
        could not be written (the others were)."""
        with self.ctx.signer.locked():
            results = self.ctx.signer.apply(self.entries())
        failed = [r for r in results if not r.ok]
        if failed:
            raise SignerError("; ".join(f"target {r.target}: {r.detail}" for r in failed))
        return results
