"""Projections as pure folds over events: KeyState per key, IdentityState per identity.

`apply_key` and `apply_identity` are the only places that interpret events; the SQLite store
calls them inside the append transaction and again when rebuilding, so the live projection
and a rebuilt one cannot disagree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from . import events as ev
from .errors import IllegalTransition
from .machine import check_transition
from .names import pattern_domain
from .reasons import Reason, code_of
from .states import Action, Mode, Role, State

_T = TypeVar("_T")


def replace(obj: _T, **changes: object) -> _T:
    """dataclasses.replace for the frozen projection states, without re-running __init__
    over every field: the fold calls it for each of millions of events on a rebuild."""
    fields = _FIELDS.get(type(obj))
    if fields is None:
        fields = _FIELDS[type(obj)] = frozenset(f.name for f in dataclasses.fields(obj))  # type: ignore[arg-type]
    if not fields.issuperset(changes):
        unknown = ", ".join(sorted(changes.keys() - fields))
        raise TypeError(f"{type(obj).__name__} has no field {unknown}")
    new = object.__new__(type(obj))
    new.__dict__.update(obj.__dict__, **changes)
    return new


_FIELDS: dict[type, frozenset[str]] = {}


def _merged(obj: _T, base: dict[str, object], **changes: object) -> _T:
    return replace(obj, **{**base, **changes})


@dataclass(frozen=True)
class KeyState:
    key_id: str
    identity: str
    domain: str
    selector: str
    policy: str
    algorithm: str
    bits: int
    fingerprint: str
    zone: str
    record_name: str
    record: str
    ttl: int
    state: State
    since: datetime
    created_at: datetime
    version: int
    next_action: Action | None
    next_action_at: datetime | None
    attempts: int = 0
    last_error: str | None = None
    replaces: str | None = None
    successor: str | None = None
    revocation_published: bool = False
    tombstone_removed: bool = False
    activated_at: datetime | None = None
    drain_until: datetime | None = None
    lookup_name: str = ""
    customer_managed: bool = False
    compromised: bool = False
    # Who declared the emergency and why: carried into every event that follows from it.
    emergency_actor: str = ""
    emergency_reason: str = ""
    parked: bool = False  # its step failed park_after times: waits for `rotator resume`
    drift: str = ""  # what a nameserver served instead of the published record (watch)
    last_error_code: Reason | None = None  # the kind of last_error, for machines

    @property
    def stream_id(self) -> str:
        return ev.key_stream(self.key_id)


@dataclass(frozen=True)
class IdentityState:
    identity: str
    domain: str
    zone: str
    policy: str
    signing_pattern: str
    created_at: datetime
    version: int
    customer: str = ""
    mode: Mode = Mode.THIRD_PARTY
    role: Role = Role.CUSTOMER
    esp_identity: str = ""
    notice: str = ""
    active_key: str | None = None
    pending_key: str | None = None
    rotation_due_at: datetime | None = None
    rotate_at: datetime | None = None  # when the active key is due to be replaced
    emergency_actor: str = ""  # set while a replacement after an emergency is under way
    emergency_reason: str = ""
    # the domain whose mail this identity signs (one owner each; see pattern_domain)
    sending_domain: str = ""
    requested_at: datetime | None = None  # an operator's rotation request not yet acted on
    retired_at: datetime | None = None  # removed (offboarded): signs nothing, rotates never
    takes_over: str = ""  # the identity this one replaces once its first key is active
    companion_of: str = ""  # dual algorithms: the identity this one is the second key of
    dns_problem: str = ""  # the customer's delegation/CNAMEs broke after activation (watch)
    notice_code: Reason | None = None  # the kinds of notice and dns_problem, for machines
    dns_problem_code: Reason | None = None

    @property
    def stream_id(self) -> str:
        return ev.identity_stream(self.identity)


# Logs written before KeyEvent.emergency existed marked an emergency's steps with this
# reason prefix; the fold still reads them.
LEGACY_EMERGENCY = "emergency: "


def _from_emergency(event: ev.KeyEvent) -> bool:
    return event.emergency or event.reason.startswith(LEGACY_EMERGENCY)


def sending_domain(event: ev.IdentityAdded) -> str:
    """An ESP identity signs no mail of its own as first signature, but its domain is
    still the ESP's: nobody else may claim it."""
    return pattern_domain(event.signing_pattern) or (event.domain if event.role == Role.ESP else "")


def apply_key(key: KeyState | None, event: ev.KeyEvent) -> KeyState:
    """Fold one key event into the key's state. Raises IllegalTransition if it cannot apply."""
    if isinstance(event, ev.KeyGenerated):
        if key is not None:
            raise IllegalTransition(f"key {event.key_id} already exists")
        imported = isinstance(event, ev.KeyImported)
        return KeyState(
            key_id=event.key_id,
            identity=event.identity,
            domain=event.domain,
            selector=event.selector,
            policy=event.policy,
            algorithm=event.algorithm,
            bits=event.bits,
            fingerprint=event.fingerprint,
            zone=event.zone,
            record_name=event.record_name,
            record=event.record,
            ttl=event.ttl,
            # An imported key was published by the customer: rotator only verifies it.
            state=State.PUBLISHED if imported else State.GENERATED,
            since=event.at,
            created_at=event.at,
            version=1,
            next_action=Action.VERIFY if imported else Action.PUBLISH,
            next_action_at=event.at,
            replaces=event.replaces,
            lookup_name=event.lookup_name,
            customer_managed=imported,
            # a replacement after an emergency: its steps up to activation are the operator's
            emergency_actor=event.actor if _from_emergency(event) else "",
            emergency_reason=(
                event.reason.removeprefix(LEGACY_EMERGENCY) if _from_emergency(event) else ""
            ),
        )
    if key is None:
        raise IllegalTransition(f"key {event.key_id} does not exist (no KeyGenerated event)")
    new_state = check_transition(
        key.key_id,
        key.state,
        type(event).__name__,
        revocation_published=key.revocation_published,
        tombstone_removed=key.tombstone_removed,
        customer_managed=key.customer_managed,
        parked=key.parked,
    )
    moved = new_state is not key.state
    # one replace per event (the fold runs for each of millions of events on a rebuild):
    # what every event changes, merged with what this one changes
    base = {"state": new_state, "since": event.at if moved else key.since}
    base["version"] = key.version + 1
    if isinstance(event, ev.DriftDetected):
        return _merged(key, base, drift=f"{event.server}: {event.answered}")
    if isinstance(event, ev.DriftResolved):
        return _merged(key, base, drift="")
    if isinstance(event, ev.ActionFailed):
        return _merged(
            key,
            base,
            attempts=event.attempt,
            last_error=event.error,
            last_error_code=code_of(event.code, event.error),
            next_action_at=event.retry_at,
        )
    if isinstance(event, ev.StepParked):
        return _merged(
            key,
            base,
            attempts=event.attempts,
            last_error=f"parked after {event.attempts} failures: {event.error}",
            last_error_code=code_of(event.code, event.error),
            next_action_at=None,
            parked=True,
        )
    if isinstance(event, ev.StepResumed):
        return _merged(key, base, attempts=0, next_action_at=event.at, parked=False)
    # Success of any action resets the retry counter (and a key compromised or withdrawn
    # while parked is not parked any more: its next step is a new one).
    base = {**base, "attempts": 0, "last_error": None, "last_error_code": None, "parked": False}
    if isinstance(event, ev.KeyPublished):
        return _merged(key, base, next_action=Action.VERIFY, next_action_at=event.at)
    if isinstance(event, ev.KeyVerified):
        return _merged(key, base, next_action=Action.ACTIVATE, next_action_at=event.activate_at)
    if isinstance(event, ev.KeyActivated):
        # While active the key owes nothing itself: rotation is scheduled on its identity.
        return _merged(
            key,
            base,
            next_action=None,
            next_action_at=None,
            activated_at=event.at,
            emergency_actor="",
            emergency_reason="",
        )
    if isinstance(event, ev.KeyCompromised):
        return _merged(
            key,
            base,
            compromised=True,
            emergency_actor=event.actor,
            emergency_reason=event.reason,
            next_action=_retirement(key),
            next_action_at=event.at,
            drain_until=event.at,
        )
    if isinstance(event, ev.KeyWithdrawn):
        return _merged(
            key, base, next_action=_retirement(key), next_action_at=event.at, drain_until=event.at
        )
    if isinstance(event, ev.ActivationRequested):
        return _merged(key, base, next_action=Action.ACTIVATE, next_action_at=event.at)
    if isinstance(event, ev.DrainStarted):
        return _merged(
            key,
            base,
            # The customer owns the DNS of an imported key: rotator only wipes its copy.
            next_action=Action.DESTROY if key.customer_managed else Action.REVOKE,
            next_action_at=event.drain_until,
            drain_until=event.drain_until,
            successor=event.successor,
        )
    if isinstance(event, ev.RevocationPublished):
        return _merged(
            key,
            base,
            revocation_published=True,
            record=event.record,
            next_action=Action.VERIFY_REVOCATION,
            next_action_at=event.at,
        )
    if isinstance(event, ev.KeyRevoked):
        return _merged(key, base, next_action=Action.DESTROY, next_action_at=event.at)
    if isinstance(event, ev.KeyDestroyed):
        if key.customer_managed:
            return _merged(key, base, tombstone_removed=True, next_action=None, next_action_at=None)
        return _merged(
            key, base, next_action=Action.REMOVE_TOMBSTONE, next_action_at=event.tombstone_until
        )
    if isinstance(event, ev.TombstoneRemoved):
        return _merged(key, base, tombstone_removed=True, next_action=None, next_action_at=None)
    raise IllegalTransition(f"key {key.key_id}: unhandled event {type(event).__name__}")


def _retirement(key: KeyState) -> Action:
    """The next step of a key taken out of service now. The customer owns the DNS of an
    imported key: only rotator's copy is wiped. A revocation already published (a drain
    that ended while a nameserver lagged) is verified, not published again."""
    if key.customer_managed:
        return Action.DESTROY
    return Action.VERIFY_REVOCATION if key.revocation_published else Action.REVOKE


def apply_identity(ident: IdentityState | None, event: ev.Event) -> IdentityState | None:
    """Fold an event into its identity's state (key events update the identity too)."""
    if isinstance(event, ev.IdentityAdded):
        if ident is not None and ident.retired_at is None:
            raise IllegalTransition(f"identity {event.identity} already exists")
        # a removed domain may come back: a new identity on the same stream
        return IdentityState(
            **{name: getattr(event, name) for name in ev.IDENTITY_FIELDS},
            created_at=event.at,
            version=1 if ident is None else ident.version + 1,
            rotation_due_at=event.at,  # the first key is due at once
            sending_domain=sending_domain(event),
        )
    if ident is None:
        if isinstance(event, ev.IdentityEvent | ev.KeyEvent):
            raise IllegalTransition(f"identity {event.identity} does not exist")
        return None
    if ident.retired_at is not None and isinstance(
        event, ev.RotationRequested | ev.PolicyChanged | ev.ModeChanged | ev.IdentityRemoved
    ):
        raise IllegalTransition(f"identity {ident.identity} was removed on {ident.retired_at:%F}")
    if isinstance(event, ev.IdentityRemoved):
        return replace(
            ident,
            version=ident.version + 1,
            retired_at=event.at,
            active_key=None,
            pending_key=None,
            rotation_due_at=None,
            rotate_at=None,
            requested_at=None,
            notice="",
            notice_code=None,
        )
    if isinstance(event, ev.CustomerDnsBroken):
        code = code_of(event.code, event.problem)
        return replace(
            ident, version=ident.version + 1, dns_problem=event.problem, dns_problem_code=code
        )
    if isinstance(event, ev.CustomerDnsRestored):
        return replace(ident, version=ident.version + 1, dns_problem="", dns_problem_code=None)
    if isinstance(event, ev.PolicyChanged):
        return replace(ident, version=ident.version + 1, policy=event.policy)
    if isinstance(event, ev.ModeChanged):
        return replace(ident, version=ident.version + 1, mode=event.mode, zone=event.zone)
    if isinstance(event, ev.RotationRequested):
        if ident.pending_key is not None:
            raise IllegalTransition(
                f"identity {ident.identity}: a rotation is already in progress "
                f"(key {ident.pending_key}); wait for it to become active"
            )
        return replace(
            ident, version=ident.version + 1, rotation_due_at=event.at, requested_at=event.at
        )
    if isinstance(event, ev.RotationDeferred):
        return replace(
            ident,
            version=ident.version + 1,
            rotation_due_at=event.retry_at,
            notice=event.notice,
            notice_code=code_of(event.code, event.notice),
        )
    if isinstance(event, ev.KeyGenerated):
        return replace(
            ident,
            pending_key=event.key_id,
            rotation_due_at=None,
            notice=event.notice,
            notice_code=code_of(event.notice_code, event.notice),
            requested_at=None,
        )
    if isinstance(event, ev.KeyActivated):
        return replace(
            ident,
            active_key=event.key_id,
            pending_key=None,
            rotate_at=event.rotate_at,
            rotation_due_at=event.generate_at or event.rotate_at,
            emergency_actor="",
            emergency_reason="",
        )
    if isinstance(event, ev.KeyWithdrawn) and event.key_id == ident.pending_key:
        # back to where it was before that key: its schedule, or a first key still to come
        due = ident.rotate_at if ident.active_key else event.at
        return replace(ident, pending_key=None, rotation_due_at=due)
    if isinstance(event, ev.KeyCompromised):
        # No active key any more (on purpose): a replacement is due now.
        marked = replace(ident, emergency_actor=event.actor, emergency_reason=event.reason)
        if event.key_id == ident.active_key:
            # A key already on its way (a standby) replaces it; otherwise generate one now.
            due = event.at if ident.pending_key is None else None
            return replace(marked, active_key=None, rotation_due_at=due)
        if event.key_id == ident.pending_key:
            due = event.at if ident.rotation_due_at is None else ident.rotation_due_at
            return replace(marked, pending_key=None, rotation_due_at=due)
    return ident


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]
