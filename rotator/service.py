"""Application use cases. Each step follows one pattern: decide from the projection,
perform the side effect (idempotent), then append the outcome as an event. A crash between
perform and append leaves the projection unchanged, so the step is redone on restart.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, TypedDict

import structlog

from . import faults
from .domain import events as ev
from .domain import selector as sel
from .domain.errors import (
    ConcurrencyError,
    ExternalError,
    IllegalTransition,
    InputError,
    NotFound,
    RotatorError,
)
from .domain.model import IdentityState, KeyState
from .domain.policy import Policy
from .domain.record import build_record, revoked_record
from .domain.states import Action, State
from .domain.verification import judge, summarize
from .names import normalize_domain
from .ports import (
    Clock,
    EventStore,
    KeyStore,
    NameserverProbe,
    Publisher,
    RecordChange,
    Signer,
    SigningEntry,
)

log = structlog.get_logger("rotator")

MAX_PASSES = 8  # per tick: lets a key chain publish -> verify -> activate without waiting


@dataclass
class TickReport:
    generated: int = 0
    succeeded: int = 0
    failed: int = 0
    by_action: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def progressed(self) -> int:
        return self.generated + self.succeeded


class Service:
    def __init__(
        self,
        store: EventStore,
        policies: Callable[[str], Policy],
        publisher: Publisher,
        probe: NameserverProbe,
        keystore: KeyStore,
        signer: Signer,
        clock: Clock,
        publisher_name: str = "primary",
    ) -> None:
        self.store = store
        self.policy = policies
        self.publisher = publisher
        self.probe = probe
        self.keystore = keystore
        self.signer = signer
        self.clock = clock

    # --- operator use cases --------------------------------------------------------------

    def add_identity(
        self,
        domain: str,
        policy: str,
        zone: str | None = None,
        signing_pattern: str | None = None,
        actor: str = "operator",
        reason: str = "",
    ) -> IdentityState:
        domain = normalize_domain(domain)
        zone = normalize_domain(zone) if zone else domain
        if not (_is_within(domain, zone) or _is_within(zone, f"_domainkey.{domain}")):
            raise InputError(
                f"zone {zone!r} cannot hold DKIM records of {domain!r}: use the domain, a "
                "parent of it, or a zone under _domainkey.<domain> such as "
                f"myesp._domainkey.{domain}"
            )
        pol = self.policy(policy)  # raises NotFound with the known names
        sample = sel.render(pol.selector_template, self.clock.now(), pol.esp)
        if not _is_within(f"{sample}._domainkey.{domain}", zone):
            raise InputError(
                f"policy {policy!r} makes selectors like {sample!r} whose records "
                f"({sample}._domainkey.{domain}) are outside zone {zone!r}; set "
                "[selector].esp to match the zone"
            )
        if self.store.identity(domain) is not None:
            raise InputError(f"domain {domain} is already managed; see `rotator status`")
        event = ev.IdentityAdded(
            at=self.clock.now(),
            actor=actor,
            reason=reason,
            identity=domain,
            domain=domain,
            zone=zone,
            policy=policy,
            signing_pattern=signing_pattern or f"*@{domain}",
        )
        self.store.append([event], {event.stream_id: 0})
        log.info("identity_added", domain=domain, zone=zone, policy=policy, actor=actor)
        ident = self.store.identity(domain)
        assert ident is not None
        return ident

    def request_rotation(self, domain: str, actor: str, reason: str) -> IdentityState:
        domain = normalize_domain(domain)
        ident = self.store.identity(domain)
        if ident is None:
            raise NotFound(f"domain {domain} is not managed; add it with `rotator domain add`")
        if ident.pending_key is not None:
            pending = self.store.key(ident.pending_key)
            where = f" ({pending.selector} is {pending.state.value})" if pending else ""
            raise InputError(
                f"a rotation of {domain} is already in progress{where}; "
                "wait for it (see `rotator status`)"
            )
        event = ev.RotationRequested(
            at=self.clock.now(), actor=actor, reason=reason, identity=domain, domain=domain
        )
        self.store.append([event], {event.stream_id: ident.version})
        log.info("rotation_requested", domain=domain, actor=actor, reason=reason)
        updated = self.store.identity(domain)
        assert updated is not None
        return updated

    # --- the daemon's work ---------------------------------------------------------------

    def startup(self) -> list[str]:
        """Converge after any crash: wipe private keys no event refers to (a crash between
        writing a key and recording KeyGenerated) and rewrite the signer from the log."""
        known = {k.key_id: k for k in self.store.list_keys()}
        wiped = []
        for key_id in self.keystore.stored_ids():
            key = known.get(key_id)
            # Unknown: KeyGenerated never landed. Destroyed: a leftover that must not exist.
            if key is None or key.state is State.DESTROYED:
                self.keystore.destroy(key_id)
                wiped.append(key_id)
                log.warning("orphan_key_wiped", key_id=key_id)
        self.sync_signer()
        return wiped

    def sync_signer(self) -> None:
        self.signer.apply(self._signing_entries())

    def tick(self, now: datetime | None = None) -> TickReport:
        report = TickReport()
        for _ in range(MAX_PASSES):
            before = report.progressed
            at = now or self.clock.now()
            for ident in self.store.due_identities(at):
                self._generate(ident, at, report)
            due = self.store.due_keys(at)
            if not due:
                break
            self._run_due(due, report)
            if report.progressed == before:
                break
        return report

    def _run_due(self, due: list[KeyState], report: TickReport) -> None:
        groups: dict[Action, list[KeyState]] = defaultdict(list)
        for key in due:
            if key.next_action is not None:
                groups[key.next_action].append(key)
        for action in Action:
            keys = groups.get(action, [])
            if not keys:
                continue
            handler = self._handlers[action]
            handler(self, keys, report)

    # --- generate ------------------------------------------------------------------------

    def _generate(self, ident: IdentityState, now: datetime, report: TickReport) -> None:
        try:
            policy = self.policy(ident.policy)
        except RotatorError as exc:
            log.error("policy_missing", domain=ident.domain, error=str(exc))
            return
        selector = sel.choose(
            policy.selector_template,
            now,
            policy.esp,
            self.store.selectors(ident.domain),
            policy.collision,
        )
        key_id = uuid.uuid4().hex[:16]
        generated = self.keystore.generate(key_id, policy.algorithm, policy.bits)
        faults.point("after-key-written")
        record = build_record(policy.algorithm, generated.public_key_b64, policy.tags)
        event = ev.KeyGenerated(
            at=now,
            key_id=key_id,
            identity=ident.identity,
            domain=ident.domain,
            selector=selector,
            policy=policy.name,
            algorithm=policy.algorithm,
            bits=policy.bits,
            fingerprint=generated.fingerprint,
            zone=ident.zone,
            record_name=f"{selector}._domainkey.{ident.domain}.",
            record=record,
            ttl=policy.ttl,
            replaces=ident.active_key,
        )
        try:
            self.store.append([event], {event.stream_id: 0})
        except (ConcurrencyError, IllegalTransition):
            self.keystore.destroy(key_id)  # never recorded: must not outlive this call
            raise
        report.generated += 1
        log.info(
            "key_generated",
            domain=ident.domain,
            selector=selector,
            key_id=key_id,
            algorithm=policy.algorithm,
            bits=policy.bits,
            fingerprint=generated.fingerprint,
        )

    # --- publish / revoke / remove tombstone (batched per zone) ---------------------------

    def _publish(self, keys: list[KeyState], report: TickReport) -> None:
        self._batch(
            keys,
            Action.PUBLISH,
            lambda k: RecordChange(k.record_name, k.ttl, k.record),
            lambda k, now, server: ev.KeyPublished(**_ids(k, now), server=server),
            report,
        )

    def _revoke(self, keys: list[KeyState], report: TickReport) -> None:
        text = revoked_record()
        self._batch(
            keys,
            Action.REVOKE,
            lambda k: RecordChange(k.record_name, k.ttl, text),
            lambda k, now, server: ev.RevocationPublished(
                **_ids(k, now), server=server, record=text
            ),
            report,
        )

    def _remove_tombstone(self, keys: list[KeyState], report: TickReport) -> None:
        self._batch(
            keys,
            Action.REMOVE_TOMBSTONE,
            lambda k: RecordChange(k.record_name, k.ttl, None),
            lambda k, now, server: ev.TombstoneRemoved(**_ids(k, now), server=server),
            report,
        )

    def _batch(
        self,
        keys: list[KeyState],
        action: Action,
        change: Callable[[KeyState], RecordChange],
        success: Callable[[KeyState, datetime, str], ev.KeyEvent],
        report: TickReport,
    ) -> None:
        by_zone: dict[str, list[KeyState]] = defaultdict(list)
        for key in keys:
            by_zone[key.zone].append(key)
        for zone, zone_keys in by_zone.items():
            try:
                server = self.publisher.apply(zone, [change(k) for k in zone_keys])
            except ExternalError as exc:
                self._failed(zone_keys, action, exc.reason, report)
                continue
            faults.point(f"after-dns-{action.value}")
            now = self.clock.now()
            self._record([success(k, now, server) for k in zone_keys], zone_keys, report, action)
            for k in zone_keys:
                log.info(
                    _DONE[action],
                    domain=k.domain,
                    selector=k.selector,
                    key_id=k.key_id,
                    zone=zone,
                    server=server,
                )

    # --- verify (publication and revocation) ---------------------------------------------

    def _verify(self, keys: list[KeyState], report: TickReport) -> None:
        for key in keys:
            results = self._observe(key, Action.VERIFY, report)
            if results is None:
                continue
            now = self.clock.now()
            event = ev.KeyVerified(**_ids(key, now), results=results, activate_at=now)
            self._record([event], [key], report, Action.VERIFY)
            log.info(
                "key_verified",
                domain=key.domain,
                selector=key.selector,
                key_id=key.key_id,
                nameservers=len(results),
            )

    def _verify_revocation(self, keys: list[KeyState], report: TickReport) -> None:
        for key in keys:
            results = self._observe(key, Action.VERIFY_REVOCATION, report)
            if results is None:
                continue
            event = ev.KeyRevoked(**_ids(key, self.clock.now()), results=results)
            self._record([event], [key], report, Action.VERIFY_REVOCATION)
            log.info("key_revoked", domain=key.domain, selector=key.selector, key_id=key.key_id)

    def _observe(
        self, key: KeyState, action: Action, report: TickReport
    ) -> tuple[dict[str, object], ...] | None:
        try:
            observations = self.probe.observe(key.zone, key.record_name)
        except ExternalError as exc:
            self._failed([key], action, exc.reason, report)
            return None
        ok, results = judge(key.record, observations)
        if not ok:
            self._failed([key], action, summarize(results), report, details=results)
            return None
        return results

    # --- activate ------------------------------------------------------------------------

    def _activate(self, keys: list[KeyState], report: TickReport) -> None:
        # One signer rewrite + reload for every key due now: an emergency over 1,000
        # domains must not reload the signer 1,000 times.
        entries = {e.signing_pattern + " " + e.domain: e for e in self._signing_entries()}
        plan: list[tuple[KeyState, KeyState | None]] = []
        for key in keys:
            ident = self.store.identity(key.identity)
            if ident is None:  # pragma: no cover - the fold forbids keys without identity
                continue
            old = self.store.key(ident.active_key) if ident.active_key else None
            entry = self._entry(key, ident)
            entries[entry.signing_pattern + " " + entry.domain] = entry
            plan.append((key, old))
        if not plan:
            return
        try:
            self.signer.apply(list(entries.values()))
        except ExternalError as exc:
            self._failed([k for k, _ in plan], Action.ACTIVATE, exc.reason, report)
            return
        faults.point("after-signer-written")
        now = self.clock.now()
        for key, old in plan:
            batch: list[ev.KeyEvent] = [
                ev.KeyActivated(
                    **_ids(key, now),
                    rotate_at=self.policy(key.policy).rotate_at(now),
                    previous=old.key_id if old else None,
                )
            ]
            if old is not None:
                batch.append(
                    ev.DrainStarted(
                        **_ids(old, now),
                        drain_until=self.policy(old.policy).drain_until(now),
                        successor=key.key_id,
                    )
                )
            self._record(batch, [key] + ([old] if old else []), report, Action.ACTIVATE)
            log.info(
                "key_activated",
                domain=key.domain,
                selector=key.selector,
                key_id=key.key_id,
                previous=old.selector if old else None,
            )

    def _signing_entries(self) -> list[SigningEntry]:
        idents = {i.identity: i for i in self.store.identities()}
        return [
            self._entry(key, idents[key.identity])
            for key in self.store.list_keys(state=State.ACTIVE)
            if key.identity in idents
        ]

    def _entry(self, key: KeyState, ident: IdentityState) -> SigningEntry:
        return SigningEntry(
            key_id=key.key_id,
            domain=key.domain,
            selector=key.selector,
            key_path=self.keystore.path(key.key_id),
            signing_pattern=ident.signing_pattern,
        )

    # --- destroy -------------------------------------------------------------------------

    def _destroy(self, keys: list[KeyState], report: TickReport) -> None:
        for key in keys:
            try:
                self.keystore.destroy(key.key_id)
            except ExternalError as exc:
                self._failed([key], Action.DESTROY, exc.reason, report)
                continue
            faults.point("after-key-wiped")
            now = self.clock.now()
            policy = self.policy(key.policy)
            event = ev.KeyDestroyed(**_ids(key, now), tombstone_until=policy.tombstone_until(now))
            self._record([event], [key], report, Action.DESTROY)
            log.info("key_destroyed", domain=key.domain, selector=key.selector, key_id=key.key_id)

    # --- recording -----------------------------------------------------------------------

    def _record(
        self,
        events: list[ev.KeyEvent],
        keys: Iterable[KeyState],
        report: TickReport,
        action: Action,
    ) -> None:
        expected = {f"key:{k.key_id}": k.version for k in keys}
        try:
            self.store.append(events, expected)
        except ConcurrencyError as exc:
            # Someone else (an operator command) moved the key: re-decide next tick.
            log.warning("append_conflict", action=action.value, error=str(exc))
            return
        report.succeeded += len(expected)
        report.by_action[action.value] += len(expected)

    def _failed(
        self,
        keys: list[KeyState],
        action: Action,
        reason: str,
        report: TickReport,
        details: tuple[dict[str, object], ...] = (),
    ) -> None:
        now = self.clock.now()
        events: list[ev.KeyEvent] = []
        for key in keys:
            attempt = key.attempts + 1
            policy = self.policy(key.policy)
            retry_at = now + policy.backoff(attempt)
            overdue = action is Action.VERIFY and now - key.since > policy.verify_timeout
            events.append(
                ev.ActionFailed(
                    **_ids(key, now),
                    action=action.value,
                    error=reason + (" [verification overdue]" if overdue else ""),
                    attempt=attempt,
                    retry_at=retry_at,
                    details=details,
                )
            )
            log.warning(
                "action_failed",
                action=action.value,
                domain=key.domain,
                selector=key.selector,
                key_id=key.key_id,
                attempt=attempt,
                retry_at=retry_at.isoformat(),
                error=reason,
            )
        expected = {f"key:{k.key_id}": k.version for k in keys}
        try:
            self.store.append(events, expected)
        except ConcurrencyError:
            return
        report.failed += len(keys)

    _handlers: ClassVar[dict[Action, Callable[[Service, list[KeyState], TickReport], None]]] = {
        Action.PUBLISH: _publish,
        Action.VERIFY: _verify,
        Action.ACTIVATE: _activate,
        Action.REVOKE: _revoke,
        Action.VERIFY_REVOCATION: _verify_revocation,
        Action.DESTROY: _destroy,
        Action.REMOVE_TOMBSTONE: _remove_tombstone,
    }


_DONE = {
    Action.PUBLISH: "key_published",
    Action.REVOKE: "revocation_published",
    Action.REMOVE_TOMBSTONE: "tombstone_removed",
}


class _Ids(TypedDict):
    at: datetime
    key_id: str
    identity: str
    domain: str
    selector: str


def _ids(key: KeyState, now: datetime) -> _Ids:
    return {
        "at": now,
        "key_id": key.key_id,
        "identity": key.identity,
        "domain": key.domain,
        "selector": key.selector,
    }


def _is_within(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)
