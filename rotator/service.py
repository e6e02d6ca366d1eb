"""Application use cases. Each step follows one pattern: decide from the projection,
perform the side effect (idempotent), then append the outcome as an event. A crash between
perform and append leaves the projection unchanged, so the step is redone on restart.
"""

from __future__ import annotations

import base64
import hashlib
import multiprocessing
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ClassVar, TypedDict, TypeVar

import structlog

from . import faults
from .domain import events as ev
from .domain import onboarding
from .domain import selector as sel
from .domain.errors import (
    ConcurrencyError,
    ExternalError,
    IllegalTransition,
    InputError,
    NotFound,
    RotatorError,
    SignerError,
)
from .domain.model import EMERGENCY, IdentityState, KeyState
from .domain.policy import Policy, pingpong_problem
from .domain.record import RecordTags, build_record, revoked_record, split_strings
from .domain.states import Action, Mode, Role, State
from .domain.verification import judge, judge_delegation, summarize
from .names import normalize_domain
from .ports import (
    Clock,
    EventStore,
    GeneratedKey,
    KeyStore,
    NameserverProbe,
    Observation,
    Publisher,
    RecordChange,
    Signer,
    SigningEntry,
)

log = structlog.get_logger("rotator")
T = TypeVar("T")


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
class CustomerRow:
    """One customer signing domain to onboard (a CLI call or a CSV row)."""

    customer: str
    domain: str
    mode: str
    policy: str
    signing_domain: str = ""
    esp_signature: str = ""
    zone: str = ""
    where: str = "input"  # "row 7" for CSV imports, for error messages


def _field(name: str, parse: Callable[[str], T], value: str) -> T:
    try:
        return parse(value)
    except RotatorError as exc:
        raise InputError(f"{name}: {exc}") from None


SETTLE_PAUSES = (0.05, 0.15)  # seconds: re-check lagging secondaries within the same tick
PARALLEL_KEYGEN = 8  # below this, starting worker processes costs more than it saves
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
        nameserver_names: Sequence[str] = (),
    ) -> None:
        self.store = store
        self.policy = policies
        self.publisher = publisher
        self.probe = probe
        self.keystore = keystore
        self.signer = signer
        self.clock = clock
        self.workers = os.cpu_count() or 1
        # The ESP's DKIM nameserver names (config dns.esp_nameservers): what customers
        # delegate to. Empty: read from each zone's own NS records.
        self.nameserver_names = frozenset(n.rstrip(".").lower() for n in nameserver_names)

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
        """An identity the ESP controls outright (`rotator domain add`)."""
        event = self.identity_event(
            domain,
            policy,
            zone,
            signing_pattern or f"*@{normalize_domain(domain)}",
            actor=actor,
            reason=reason,
        )
        return self._add([event])[0]

    def add_esp(
        self,
        domain: str,
        policy: str,
        zone: str | None = None,
        actor: str = "operator",
        reason: str = "",
    ) -> IdentityState:
        """The ESP's own signing domain: the second, feedback-loop signature on customer
        mail (customers opt in with --esp-signature)."""
        event = self.identity_event(
            domain, policy, zone, "", role=Role.ESP, actor=actor, reason=reason
        )
        return self._add([event])[0]

    def add_customers(
        self,
        rows: Sequence[CustomerRow],
        actor: str = "operator",
        reason: str = "",
        progress: Callable[[Iterable[CustomerRow]], Iterable[CustomerRow]] = iter,
    ) -> list[IdentityState]:
        """Validate every row first, then add them all in one transaction: a bad row
        changes nothing. Errors name the row (its line in a CSV file) and the field."""
        events: list[ev.IdentityAdded] = []
        seen: set[str] = set()
        for row in progress(rows):
            try:
                event = self.customer_event(row, actor, reason)
            except RotatorError as exc:
                raise InputError(f"{row.where}: {exc}") from None
            if event.identity in seen:
                raise InputError(f"{row.where}: domain {event.domain} appears twice")
            seen.add(event.identity)
            events.append(event)
        return self._add(events)

    def customer_event(self, row: CustomerRow, actor: str, reason: str) -> ev.IdentityAdded:
        customer = row.customer.strip()
        if not customer or len(customer) > 100 or any(c in customer for c in ",\n\t"):
            raise InputError("customer: give a name of 1-100 characters without commas")
        try:
            mode = Mode(row.mode)
        except ValueError:
            raise InputError(
                f"mode: {row.mode!r} is not one of {', '.join(m.value for m in Mode)}"
            ) from None
        domain = _field("domain", normalize_domain, row.domain)
        esp_identity = ""
        if row.esp_signature:
            esp_identity = _field("esp_signature", normalize_domain, row.esp_signature)
            esp = self.store.identity(esp_identity)
            if esp is None or esp.role != Role.ESP:
                raise InputError(
                    f"esp_signature: {esp_identity} is not an ESP signing domain; add it with "
                    "`rotator esp add`"
                )
        pol = _field("policy", self.policy, row.policy)
        if row.signing_domain and mode is not Mode.THIRD_PARTY:
            raise InputError("signing_domain: only third-party customers have one")
        # d= and the zone of its records, per mode; the mail signed is always *@domain
        signer, zone = domain, row.zone or None
        if mode in (Mode.CNAME, Mode.PING_PONG):
            if not row.zone:
                raise InputError(
                    f"zone: {mode.value} customers need the ESP zone their CNAMEs point "
                    "into (e.g. cname.esp-dkim.net)"
                )
            problem = pingpong_problem(pol) if mode is Mode.PING_PONG else None
            if problem:
                raise InputError(f"policy: {problem}")
        elif mode is Mode.CUSTOMER_KEY:
            zone = row.zone or domain
        elif mode is Mode.NS_DELEGATION:
            zone = f"{pol.esp}._domainkey.{domain}"
        else:
            if not row.signing_domain:
                raise InputError(
                    "signing_domain: third-party customers need the ESP-controlled domain "
                    "that signs for them (e.g. acme.esp-dkim.net)"
                )
            signer = _field("signing_domain", normalize_domain, row.signing_domain)
            if _is_within(signer, domain):
                raise InputError(
                    f"signing_domain: {signer} is inside the customer's own domain; a "
                    "third-party signing domain is one the ESP controls"
                )
        return self.identity_event(
            signer,
            pol.name,
            zone,
            f"*@{domain}",
            customer=customer,
            mode=mode,
            esp_identity=esp_identity,
            actor=actor,
            reason=reason,
        )

    def import_key(
        self, domain: str, selector: str, pem: bytes, actor: str, reason: str = ""
    ) -> KeyState:
        """A customer-generated key (customer-key mode): keep the private key, verify the
        customer's DNS, then sign with it. The previous key drains and is wiped."""
        domain = normalize_domain(domain)
        ident = self.store.identity(domain)
        if ident is None or ident.mode != Mode.CUSTOMER_KEY:
            raise InputError(
                f"{domain} is not a customer-key customer; add it with "
                "`rotator customer add NAME --domain D --mode customer-key`"
            )
        if ident.pending_key is not None:
            raise InputError(f"{domain} already has a key waiting for verification")
        selector = sel.validate_selector(selector.lower())
        if selector in self.store.selectors(domain):
            raise InputError(f"selector {selector!r} was already used for {domain}")
        algorithm, bits, material = self.keystore.describe(pem)
        policy = self.policy(ident.policy)
        key_id = uuid.uuid4().hex[:16]
        record = build_record(algorithm, base64.b64encode(material).decode(), RecordTags())
        event = ev.KeyImported(
            at=self.clock.now(),
            actor=actor,
            reason=reason,
            key_id=key_id,
            identity=ident.identity,
            domain=domain,
            selector=selector,
            policy=policy.name,
            algorithm=algorithm,
            bits=bits,
            fingerprint=hashlib.sha256(material).hexdigest(),
            zone=ident.zone,
            record_name=_lookup(selector, domain),
            record=record,
            ttl=policy.ttl,
            replaces=ident.active_key,
        )
        self.keystore.write(key_id, pem)
        try:
            self.store.append([event], {event.stream_id: 0})
        except RotatorError:
            self.keystore.destroy(key_id)
            raise
        log.info(
            "key_imported",
            domain=domain,
            selector=selector,
            key_id=key_id,
            fingerprint=event.fingerprint,
            actor=actor,
        )
        key = self.store.key(key_id)
        assert key is not None
        return key

    def identity_event(
        self,
        domain: str,
        policy: str,
        zone: str | None,
        signing_pattern: str,
        *,
        customer: str = "",
        mode: Mode = Mode.THIRD_PARTY,
        role: Role = Role.CUSTOMER,
        esp_identity: str = "",
        actor: str = "operator",
        reason: str = "",
    ) -> ev.IdentityAdded:
        """Validate and build (not record) the event that adds one signing identity."""
        domain = normalize_domain(domain)
        zone = normalize_domain(zone) if zone else domain
        if mode in (Mode.CNAME, Mode.PING_PONG):
            # Records live in the ESP's zone under <selector>.<domain>.<zone>; the customer's
            # CNAMEs lead there.
            pol = self.policy(policy)
        elif not (_is_within(domain, zone) or _is_within(zone, f"_domainkey.{domain}")):
            raise InputError(
                f"zone {zone!r} cannot hold DKIM records of {domain!r}: use the domain, a "
                "parent of it, or a zone under _domainkey.<domain> such as "
                f"myesp._domainkey.{domain}"
            )
        else:
            pol = self.policy(policy)  # raises NotFound with the known names
        sample = sel.render(pol.selector_template, self.clock.now(), pol.esp)
        if mode in (Mode.NS_DELEGATION, Mode.THIRD_PARTY) and not _is_within(
            f"{sample}._domainkey.{domain}", zone
        ):
            raise InputError(
                f"policy {policy!r} makes selectors like {sample!r} whose records "
                f"({sample}._domainkey.{domain}) are outside zone {zone!r}; set "
                "[selector].esp to match the zone"
            )
        if self.store.identity(domain) is not None:
            raise InputError(f"domain {domain} is already managed; see `rotator status`")
        return ev.IdentityAdded(
            at=self.clock.now(),
            actor=actor,
            reason=reason,
            identity=domain,
            domain=domain,
            zone=zone,
            policy=policy,
            signing_pattern=signing_pattern,
            customer=customer,
            mode=mode.value,
            role=role.value,
            esp_identity=esp_identity,
        )

    def _add(self, events: Sequence[ev.IdentityAdded]) -> list[IdentityState]:
        self.store.append(list(events), {e.stream_id: 0 for e in events})
        out = []
        for e in events:
            log.info(
                "identity_added",
                domain=e.domain,
                zone=e.zone,
                policy=e.policy,
                mode=e.mode,
                role=e.role,
                customer=e.customer,
                actor=e.actor,
            )
            ident = self.store.identity(e.identity)
            assert ident is not None
            out.append(ident)
        return out

    def onboarding(self, ident: IdentityState) -> tuple[str, list[str]]:
        """(explanation, zone-file lines) the customer's IT must add for this identity."""
        customer_domain = ident.signing_pattern.partition("@")[2] or ident.domain
        if ident.mode in (Mode.CNAME, Mode.PING_PONG, Mode.CUSTOMER_KEY):
            records = [f"{name} 86400 IN CNAME {target}" for name, target in self._cnames(ident)]
            for key in self.store.list_keys(ident.identity):
                if key.customer_managed and key.state in (
                    State.PUBLISHED,
                    State.VERIFIED,
                    State.ACTIVE,
                ):
                    text = " ".join(f'"{c.decode()}"' for c in split_strings(key.record))
                    records.append(f"{key.record_name} 3600 IN TXT ( {text} )")
            return onboarding.explain(
                ident.mode, customer_domain, ident.domain, ident.zone
            ), records
        records = onboarding.customer_records(
            ident.mode, ident.domain, ident.zone, self.esp_nameservers(ident.zone)
        )
        return onboarding.explain(ident.mode, customer_domain, ident.domain, ident.zone), records

    def esp_nameservers(self, zone: str) -> list[str]:
        if self.nameserver_names:
            return sorted(self.nameserver_names)
        return sorted(self.probe.delegation(zone).served)

    def _cnames(self, ident: IdentityState) -> list[tuple[str, str]]:
        """(name, target) of every CNAME the customer must create."""
        policy = self.policy(ident.policy)
        if ident.mode == Mode.PING_PONG:
            names = list(policy.pingpong_slots)
        elif ident.mode == Mode.CNAME:
            names = [f"{policy.esp}{n}" for n in range(1, policy.cname_count + 1)]
        else:
            return []
        return [(_lookup(n, ident.domain), self._target(n, ident)) for n in names]

    def check_customer_dns(self, ident: IdentityState) -> str | None:
        """None when the customer's side is in place, else what is missing."""
        if ident.mode in (Mode.CNAME, Mode.PING_PONG):
            missing = [
                name for name, target in self._cnames(ident) if self.probe.cname(name) != target
            ]
            if not missing:
                return None
            return (
                f"awaiting customer DNS: {len(missing)} CNAMEs missing or wrong: "
                + ", ".join(missing[:5])
                + (" ..." if len(missing) > 5 else "")
            )
        if ident.mode == Mode.CUSTOMER_KEY:
            missing = []
            for key in self.store.list_keys(ident.identity):
                if key.customer_managed and key.state in (
                    State.PUBLISHED,
                    State.VERIFIED,
                    State.ACTIVE,
                ):
                    try:
                        observed = self.probe.observe(key.zone, key.record_name)
                    except ExternalError as exc:
                        missing.append(f"{key.record_name} ({exc.reason})")
                        continue
                    ok, results = judge(key.record, observed, key_only=True)
                    if not ok:
                        missing.append(f"{key.record_name} ({summarize(results)})")
            if missing:
                return "awaiting customer DNS: " + "; ".join(missing)
            return None
        if ident.mode != Mode.NS_DELEGATION:
            return None
        view = self.probe.delegation(ident.zone)
        return judge_delegation(view, frozenset(self.nameserver_names))

    def request_rotation(self, domain: str, actor: str, reason: str) -> IdentityState:
        domain = normalize_domain(domain)
        ident = self.store.identity(domain)
        if ident is None:
            raise NotFound(f"domain {domain} is not managed; add it with `rotator domain add`")
        if ident.pending_key is not None:
            pending = self.store.key(ident.pending_key)
            if pending is not None and pending.state is State.VERIFIED and ident.active_key:
                # A standby key: the rotation is a switch, not a key generation.
                switch = ev.ActivationRequested(
                    **_by(_ids(pending, self.clock.now()), actor, reason)
                )
                self.store.append([switch], {switch.stream_id: pending.version})
                log.info(
                    "standby_switch_requested",
                    domain=domain,
                    selector=pending.selector,
                    actor=actor,
                    reason=reason,
                )
                return ident
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

    # --- emergency ----------------------------------------------------------------------

    def emergency_plan(self, scope: Scope) -> EmergencyPlan:
        """Which keys to take out of service now, and which standby keys to switch to."""
        idents = {i.identity: i for i in self.store.identities()}
        chosen = scope.identities(idents)
        keys = [k for k in self.store.list_keys() if k.identity in chosen]
        compromise: list[KeyState] = []
        promote: list[KeyState] = []
        for key in keys:
            if key.state in (State.REVOKED, State.DESTROYED) or key.compromised:
                continue
            ident = idents[key.identity]
            if scope.selector and key.selector != scope.selector:
                continue
            is_standby = key.key_id == ident.pending_key
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

    def emergency(self, plan: EmergencyPlan, actor: str, reason: str) -> None:
        """Record the compromise (keys leave the signer at once), then rewrite the signer.
        Revocation and replacements follow on the next tick, which the caller triggers."""
        now = self.clock.now()
        events: list[ev.Event] = [
            ev.KeyCompromised(**_by(_ids(k, now), actor, reason), scope=plan.scope.describe())
            for k in plan.compromise
        ]
        events += [ev.ActivationRequested(**_by(_ids(k, now), actor, reason)) for k in plan.promote]
        expected = {f"key:{k.key_id}": k.version for k in plan.compromise + plan.promote}
        self.store.append(events, expected)
        log.warning(
            "emergency",
            scope=plan.scope.describe(),
            keys=len(plan.compromise),
            standbys=len(plan.promote),
            actor=actor,
            reason=reason,
        )
        try:
            self.sync_signer()
        except ExternalError as exc:
            raise SignerError(
                f"keys are marked compromised, but the signer was not rewritten: {exc.reason}; "
                "fix that, then run `rotator run --once` (or restart the daemon)"
            ) from None

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
        # Computed inside the signer lock: whoever writes last writes the latest state.
        with self.signer.locked():
            self.signer.apply(self._signing_entries())

    def tick(self, now: datetime | None = None) -> TickReport:
        report = TickReport()
        for _ in range(MAX_PASSES):
            before = report.progressed
            at = now or self.clock.now()
            # Keys first: a revocation due now frees a ping-pong slot for the generation
            # due now.
            self._run_due(self.store.due_keys(at), report)
            self._generate(self.store.due_identities(at), at, report)
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

    def _generate(self, idents: list[IdentityState], now: datetime, report: TickReport) -> None:
        """New keys for every identity due: placed one by one (cheap), generated in parallel
        across CPU cores when there are many (RSA generation is the bottleneck), recorded in
        one transaction."""
        todo: list[tuple[IdentityState, Policy, tuple[str, str, str, str], str]] = []
        for ident in idents:
            try:
                policy = self.policy(ident.policy)
            except RotatorError as exc:
                log.error("policy_missing", domain=ident.domain, error=str(exc))
                continue
            if ident.pending_key is not None:  # a key is already on its way
                continue
            placement = self._place(ident, policy, now)
            if isinstance(placement, str):
                self._defer(ident, policy, now, placement)
                continue
            todo.append((ident, policy, placement, uuid.uuid4().hex[:16]))
        if not todo:
            return
        specs = [(key_id, policy.algorithm, policy.bits) for _, policy, _, key_id in todo]
        generated = self.keygen(specs)
        faults.point("after-key-written")
        events = []
        for (ident, policy, placement, key_id), gen in zip(todo, generated, strict=True):
            selector, record_name, lookup_name, notice = placement
            events.append(
                ev.KeyGenerated(
                    **_emergency_ids(
                        {
                            "at": now,
                            "key_id": key_id,
                            "identity": ident.identity,
                            "domain": ident.domain,
                            "selector": selector,
                        },
                        ident,
                    ),
                    policy=policy.name,
                    algorithm=policy.algorithm,
                    bits=policy.bits,
                    fingerprint=gen.fingerprint,
                    zone=ident.zone,
                    record_name=record_name,
                    record=build_record(policy.algorithm, gen.public_key_b64, policy.tags),
                    ttl=policy.ttl,
                    replaces=ident.active_key,
                    lookup_name=lookup_name,
                    notice=notice,
                )
            )
        try:
            self.store.append(events, {e.stream_id: 0 for e in events})
        except (ConcurrencyError, IllegalTransition):
            for _, _, _, key_id in todo:  # never recorded: must not outlive this call
                self.keystore.destroy(key_id)
            raise
        report.generated += len(events)
        for e in events:
            log.info(
                "key_generated",
                domain=e.domain,
                selector=e.selector,
                key_id=e.key_id,
                algorithm=e.algorithm,
                bits=e.bits,
                fingerprint=e.fingerprint,
            )

    def keygen(self, specs: list[tuple[str, str, int]]) -> list[GeneratedKey]:
        """Generate keys; a process per core when there are enough to be worth it."""
        rsa = sum(1 for _, algorithm, _ in specs if algorithm == "rsa")
        # ed25519 keys take microseconds: only RSA is worth the worker processes
        if rsa < PARALLEL_KEYGEN or self.workers < 2:
            return [self.keystore.generate(*spec) for spec in specs]
        ctx = multiprocessing.get_context("spawn")  # no fork of a threaded daemon
        with ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx) as pool:
            futures = [pool.submit(self.keystore.generate, *spec) for spec in specs]
            return [f.result() for f in futures]

    def _place(
        self, ident: IdentityState, policy: Policy, now: datetime
    ) -> tuple[str, str, str, str] | str:
        """(selector, record name, lookup name, notice) for the next key of `ident`, or why
        there cannot be one yet."""
        domain = ident.domain
        if ident.mode == Mode.CUSTOMER_KEY:
            active = self.store.key(ident.active_key) if ident.active_key else None
            age = f" ({active.selector} active since {active.since:%Y-%m-%d})" if active else ""
            return (
                f"rotation needed from customer{age}: import their new key with "
                "`rotator customer import-key`"
            )
        if ident.mode == Mode.PING_PONG:
            keys = self.store.list_keys(ident.identity)
            busy = {k.selector for k in keys if k.state not in (State.REVOKED, State.DESTROYED)}
            slots = list(policy.pingpong_slots)
            active = next((k for k in keys if k.key_id == ident.active_key), None)
            start = slots.index(active.selector) + 1 if active and active.selector in slots else 0
            for slot in slots[start:] + slots[:start]:
                if slot not in busy:
                    return slot, self._target(slot, ident), _lookup(slot, domain), ""
            return f"no free ping-pong slot: {', '.join(sorted(busy))} still in use"
        if ident.mode == Mode.CNAME:
            used = [_seq(k.selector, policy.esp) for k in self.store.list_keys(ident.identity)]
            n = max([x for x in used if x is not None], default=0) + 1
            if n > policy.cname_count:
                return (
                    f"awaiting customer DNS: all {policy.cname_count} pre-created CNAMEs are "
                    "used; the customer must add the next ones (`rotator customer check`)"
                )
            selector = f"{policy.esp}{n}"
            left = len(
                [
                    m
                    for m in range(n + 1, policy.cname_count + 1)
                    if self.probe.cname(_lookup(f"{policy.esp}{m}", domain))
                    == self._target(f"{policy.esp}{m}", ident)
                ]
            )
            notice = ""
            if left < policy.cname_warn_below:
                notice = (
                    f"only {left} pre-created CNAMEs left after {selector}; ask the customer "
                    "for more (`rotator customer check`)"
                )
                log.warning("cnames_low", domain=domain, left=left)
            return selector, self._target(selector, ident), _lookup(selector, domain), notice
        selector = sel.choose(
            policy.selector_template,
            now,
            policy.esp,
            self.store.selectors(domain),
            policy.collision,
        )
        return selector, _lookup(selector, domain), "", ""

    @staticmethod
    def _target(selector: str, ident: IdentityState) -> str:
        """Where a CNAME/ping-pong customer's CNAME for `selector` points, in the ESP zone."""
        return f"{selector}.{ident.domain}.{ident.zone}."

    def _defer(self, ident: IdentityState, policy: Policy, now: datetime, why: str) -> None:
        # Customer-managed keys wait for the customer: look again daily, not every retry.
        # A busy ping-pong slot frees when its key's next step (revocation) is done: look
        # again then, not a full retry_max later.
        retry_at = now + max(policy.retry_max, policy.retry_base)
        if ident.mode == Mode.CUSTOMER_KEY:
            retry_at = now + timedelta(days=1)
        elif ident.mode == Mode.PING_PONG:
            steps = [
                k.next_action_at
                for k in self.store.list_keys(ident.identity)
                if k.state is State.DRAINING and k.next_action_at is not None
            ]
            if steps:
                retry_at = min(retry_at, max(min(steps), now) + policy.retry_base)
        event = ev.RotationDeferred(
            at=now,
            identity=ident.identity,
            domain=ident.domain,
            retry_at=retry_at,
            notice=why,
        )
        try:
            self.store.append([event], {event.stream_id: ident.version})
        except ConcurrencyError:
            return
        log.warning("rotation_deferred", domain=ident.domain, notice=why)

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
        # A ping-pong slot's name is reused: once a newer key owns the name, deleting the
        # RRset would take that key down. The tombstone is gone already (replaced).
        reused = []
        for key in keys:
            newer = [
                k
                for k in self.store.list_keys(key.identity)
                if k.record_name == key.record_name and k.created_at > key.created_at
            ]
            if newer:
                reused.append(key)
                event = ev.TombstoneRemoved(
                    **_ids(key, self.clock.now()), server=f"(replaced by {newer[0].selector})"
                )
                self._record([event], [key], report, Action.REMOVE_TOMBSTONE)
        keys = [k for k in keys if k not in reused]
        if not keys:
            return
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
        # One UPDATE per zone, then one transaction for every zone's outcome (a crash before
        # it only means the idempotent updates are sent again).
        events: list[ev.KeyEvent] = []
        done: list[KeyState] = []
        for zone, zone_keys in by_zone.items():
            try:
                server = self.publisher.apply(zone, [change(k) for k in zone_keys])
            except ExternalError as exc:
                self._failed(zone_keys, action, exc.reason, report)
                continue
            faults.point(f"after-dns-{action.value}")
            now = self.clock.now()
            events += [success(k, now, server) for k in zone_keys]
            done += zone_keys
            for k in zone_keys:
                log.info(
                    _DONE[action],
                    domain=k.domain,
                    selector=k.selector,
                    key_id=k.key_id,
                    zone=zone,
                    server=server,
                )
        self._record(events, done, report, action, split_on_conflict=True)

    # --- verify (publication and revocation) ---------------------------------------------

    def _verify(self, keys: list[KeyState], report: TickReport) -> None:
        ready = []
        for key in keys:
            ident = self.store.identity(key.identity)
            if ident is not None and ident.mode == Mode.NS_DELEGATION:
                # The customer's NS records are what make the key visible at all.
                problem = self.check_customer_dns(ident)
                if problem:
                    self._failed([key], Action.VERIFY, problem, report)
                    continue
            if key.lookup_name:
                # CNAME and ping-pong: receivers reach the record only through the
                # customer's CNAME, so it must point exactly here.
                target = self.probe.cname(key.lookup_name)
                if target != key.record_name:
                    seen = f"points to {target}" if target else "is missing"
                    problem = (
                        f"awaiting customer DNS: CNAME {key.lookup_name} -> {key.record_name} "
                        f"{seen}"
                    )
                    self._failed([key], Action.VERIFY, problem, report)
                    continue
            ready.append(key)
        verified = self._observe_all(ready, Action.VERIFY, report)
        now = self.clock.now()
        events: list[ev.KeyEvent] = []
        done = []
        for key in ready:
            if key.key_id not in verified:
                continue
            # A reused record name (ping-pong slot) may still be cached with the old key's
            # data: activate only once that record's TTL has passed.
            previous = [
                k
                for k in self.store.list_keys(key.identity)
                if k.record_name == key.record_name and k.key_id != key.key_id
            ]
            activate_at = now + timedelta(seconds=max((k.ttl for k in previous), default=0))
            ident = self.store.identity(key.identity)
            if (
                ident is not None
                and ident.active_key
                and ident.rotate_at is not None
                and self.policy(key.policy).standby
            ):
                # A standby waits, verified, for the active key's scheduled rotation.
                activate_at = max(activate_at, ident.rotate_at)
            events.append(
                ev.KeyVerified(
                    **_ids(key, now), results=verified[key.key_id], activate_at=activate_at
                )
            )
            done.append(key)
        self._record(events, done, report, Action.VERIFY, split_on_conflict=True)
        for key in done:
            log.info(
                "key_verified",
                domain=key.domain,
                selector=key.selector,
                key_id=key.key_id,
                nameservers=len(verified[key.key_id]),
            )

    def _verify_revocation(self, keys: list[KeyState], report: TickReport) -> None:
        revoked = self._observe_all(keys, Action.VERIFY_REVOCATION, report)
        done = [k for k in keys if k.key_id in revoked]
        now = self.clock.now()
        events: list[ev.KeyEvent] = [
            ev.KeyRevoked(**_ids(k, now), results=revoked[k.key_id]) for k in done
        ]
        self._record(events, done, report, Action.VERIFY_REVOCATION, split_on_conflict=True)
        for key in done:
            log.info("key_revoked", domain=key.domain, selector=key.selector, key_id=key.key_id)

    def _observe_all(
        self, keys: list[KeyState], action: Action, report: TickReport
    ) -> dict[str, tuple[dict[str, object], ...]]:
        """Results for every key whose record every authoritative address serves. A
        secondary is usually only milliseconds behind (NOTIFY + IXFR), so keys that fail
        are looked at again after short pauses before the failure is recorded."""
        good: dict[str, tuple[dict[str, object], ...]] = {}
        why: dict[str, tuple[str, tuple[dict[str, object], ...]]] = {}
        pending = list(keys)
        for pause in (0.0, *SETTLE_PAUSES):
            if not pending:
                break
            if pause:
                time.sleep(pause)
            still = []
            for key, observed in zip(pending, self._observe_many(pending), strict=True):
                if isinstance(observed, ExternalError):
                    why[key.key_id] = (observed.reason, ())
                    still.append(key)
                    continue
                observations = observed
                ok, results = judge(key.record, observations, key_only=key.customer_managed)
                if ok:
                    good[key.key_id] = results
                else:
                    why[key.key_id] = (summarize(results), results)
                    still.append(key)
            pending = still
        for key in pending:
            reason, details = why[key.key_id]
            self._failed([key], action, reason, report, details=details)
        return good

    def _observe_many(self, keys: list[KeyState]) -> list[list[Observation] | ExternalError]:
        """Query for many keys at once: the work is waiting on nameservers, not CPU."""

        def one(key: KeyState) -> list[Observation] | ExternalError:
            try:
                return self.probe.observe(key.zone, key.record_name)
            except ExternalError as exc:
                return exc

        if len(keys) < 2:
            return [one(k) for k in keys]
        with ThreadPoolExecutor(max_workers=min(16, len(keys))) as pool:
            return list(pool.map(one, keys))

    # --- activate ------------------------------------------------------------------------

    def _activate(self, keys: list[KeyState], report: TickReport) -> None:
        # One signer rewrite + reload for every key due now: an emergency over 1,000
        # domains must not reload the signer 1,000 times. The signer lock makes an operator's
        # emergency (another process) and this step write the signer one after the other,
        # each from the state it reads inside the lock.
        with self.signer.locked():
            conflicts = self._activate_locked(keys, report)
        if conflicts:
            # A key changed under us (e.g. compromised meanwhile): never leave the signer
            # holding what the log says must not sign.
            self.sync_signer()

    def _activate_locked(self, keys: list[KeyState], report: TickReport) -> int:
        fresh = [self.store.key(k.key_id) for k in keys]
        keys = [k for k in fresh if k is not None and k.state is State.VERIFIED]
        idents = {i.identity: i for i in self.store.identities()}
        current = self._signing_entries(idents)
        plan: list[tuple[KeyState, KeyState | None]] = []
        for key in keys:
            ident = idents.get(key.identity)
            if ident is None:  # pragma: no cover - the fold forbids keys without identity
                continue
            old = self.store.key(ident.active_key) if ident.active_key else None
            plan.append((key, old))
        if not plan:
            return 0
        retired = {old.key_id for _, old in plan if old is not None}
        entries = [e for e in current if e.key_id not in retired]
        for key, _ in plan:
            entries += self._entries_for(key, idents)
        try:
            self.signer.apply(entries)
        except ExternalError as exc:
            self._failed([k for k, _ in plan], Action.ACTIVATE, exc.reason, report)
            return 0
        faults.point("after-signer-written")
        now = self.clock.now()
        batches: list[tuple[list[ev.KeyEvent], list[KeyState]]] = []
        for key, old in plan:
            ident = idents[key.identity]
            batch: list[ev.KeyEvent] = [
                ev.KeyActivated(
                    **_emergency_ids(_ids(key, now), ident),
                    rotate_at=self.policy(key.policy).rotate_at(now),
                    previous=old.key_id if old else None,
                    generate_at=now if self.policy(key.policy).standby else None,
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
            batches.append((batch, [key] + ([old] if old else [])))
        # All in one transaction; if any key moved meanwhile, identity by identity (a new
        # key's activation and its predecessor's drain always land together).
        recorded = batches
        everything = [e for events, _ in batches for e in events]
        if len(batches) == 1 or not self._record(
            everything, [k for _, ks in batches for k in ks], report, Action.ACTIVATE
        ):
            recorded = [b for b in batches if self._record(b[0], b[1], report, Action.ACTIVATE)]
        for events, _ in recorded:
            log.info(
                "key_activated",
                domain=events[0].domain,
                selector=events[0].selector,
                key_id=events[0].key_id,
            )
        return len(batches) - len(recorded)

    def _signing_entries(
        self, idents: dict[str, IdentityState] | None = None
    ) -> list[SigningEntry]:
        """What the signer must hold: every active key, under its identity's pattern; an
        ESP key also under the pattern of every customer that opted in to its signature."""
        if idents is None:
            idents = {i.identity: i for i in self.store.identities()}
        out: list[SigningEntry] = []
        for key in self.store.list_keys(state=State.ACTIVE):
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
        return [
            SigningEntry(
                key_id=key.key_id,
                domain=key.domain,
                selector=key.selector,
                key_path=self.keystore.path(key.key_id),
                signing_pattern=pattern,
            )
            for pattern in patterns
        ]

    # --- destroy -------------------------------------------------------------------------

    def _destroy(self, keys: list[KeyState], report: TickReport) -> None:
        wiped = []
        for key in keys:
            try:
                self.keystore.destroy(key.key_id)
            except ExternalError as exc:
                self._failed([key], Action.DESTROY, exc.reason, report)
                continue
            wiped.append(key)
        if not wiped:
            return
        faults.point("after-key-wiped")
        now = self.clock.now()
        events: list[ev.KeyEvent] = [
            ev.KeyDestroyed(
                **_ids(k, now), tombstone_until=self.policy(k.policy).tombstone_until(now)
            )
            for k in wiped
        ]
        self._record(events, wiped, report, Action.DESTROY, split_on_conflict=True)
        for key in wiped:
            log.info("key_destroyed", domain=key.domain, selector=key.selector, key_id=key.key_id)

    # --- recording -----------------------------------------------------------------------

    def _record(
        self,
        events: list[ev.KeyEvent],
        keys: Iterable[KeyState],
        report: TickReport,
        action: Action,
        split_on_conflict: bool = False,
    ) -> bool:
        """Append the outcome events of many keys in one transaction (one fsync). With
        split_on_conflict (independent keys, one event each), a key that moved meanwhile
        makes it fall back to one transaction per key so the others still land."""
        keys = list(keys)
        if not events:
            return True
        expected = {f"key:{k.key_id}": k.version for k in keys}
        try:
            self.store.append(events, expected)
        except ConcurrencyError as exc:
            if not split_on_conflict or len(keys) == 1:
                # Someone else (an operator command) moved the key: re-decide next tick.
                log.warning("append_conflict", action=action.value, error=str(exc))
                return False
            ok = True
            for key in keys:
                mine = [e for e in events if e.key_id == key.key_id]
                ok = self._record(mine, [key], report, action) and ok
            return ok
        report.succeeded += len(expected)
        report.by_action[action.value] += len(expected)
        return True

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


class _Ids(TypedDict, total=False):
    at: datetime
    key_id: str
    identity: str
    domain: str
    selector: str
    actor: str
    reason: str


def _ids(key: KeyState, now: datetime) -> _Ids:
    ids: _Ids = {
        "at": now,
        "key_id": key.key_id,
        "identity": key.identity,
        "domain": key.domain,
        "selector": key.selector,
    }
    if key.emergency_actor:
        # the steps an emergency set off are the operator's, with their reason
        ids["actor"] = key.emergency_actor
        ids["reason"] = f"{EMERGENCY}{key.emergency_reason}"
    return ids


def _by(ids: _Ids, actor: str, reason: str) -> _Ids:
    """The same ids, attributed to an operator."""
    return {**ids, "actor": actor, "reason": reason}


def _emergency_ids(ids: _Ids, ident: IdentityState) -> _Ids:
    """A replacement set off by an emergency on this identity is the operator's step."""
    if not ident.emergency_actor:
        return ids
    return _by(ids, ident.emergency_actor, f"{EMERGENCY}{ident.emergency_reason}")


def _lookup(selector: str, domain: str) -> str:
    return f"{selector}._domainkey.{domain}."


def _seq(selector: str, esp: str) -> int | None:
    rest = selector.removeprefix(esp)
    return int(rest) if rest != selector and rest.isdigit() else None


def _is_within(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)
