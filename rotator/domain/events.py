"""Events: frozen dataclasses, one per fact. The log of these is the source of truth; every
projection (key state, identity state) is a fold over them (see model.py).

Events never carry private key material: only the public key and its fingerprint.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, ClassVar

from .errors import RotatorError
from .event_base import (
    _COMMON,
    _SPARSE,
    JSON,
    Event,
    IdentityEvent,
    KeyEvent,
    identity_stream,
    key_stream,
)
from .events_more import (
    POOL_STREAM,
    SAFETY_STREAM,
    CustomerDnsBroken,
    CustomerDnsRestored,
    DriftDetected,
    DriftResolved,
    IdentityRemoved,
    ModeChanged,
    PolicyChanged,
    PoolEvent,
    PoolKeyAdded,
    PoolKeyDiscarded,
    SafetyEvent,
    SafetyReleased,
    SafetyStopped,
)
from .reasons import Reason
from .states import Mode, Role

# re-exported: everything about events is reachable as events.X
__all__ = [
    "JSON",
    "POOL_STREAM",
    "SAFETY_STREAM",
    "_COMMON",
    "_SPARSE",
    "CustomerDnsBroken",
    "CustomerDnsRestored",
    "DriftDetected",
    "DriftResolved",
    "Event",
    "IdentityEvent",
    "IdentityRemoved",
    "KeyEvent",
    "ModeChanged",
    "PolicyChanged",
    "PoolEvent",
    "PoolKeyAdded",
    "PoolKeyDiscarded",
    "SafetyEvent",
    "SafetyReleased",
    "SafetyStopped",
    "identity_stream",
    "key_stream",
]

# --- identity events -------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class IdentityAdded(IdentityEvent):
    """A signing identity (d= domain + policy + DNS zone) is now managed by rotator."""

    opens_stream: ClassVar[bool] = True

    zone: str
    policy: str
    signing_pattern: str  # SigningTable pattern, e.g. "*@example.com"; "" for ESP identities
    customer: str = ""
    mode: Mode = Mode.THIRD_PARTY
    role: Role = Role.CUSTOMER
    esp_identity: str = ""  # the ESP identity that adds the feedback-loop signature
    # a mode change that moves d= (third-party <-> the customer's own domain): this identity
    # takes over from that one, which signs until this one's first key is active
    takes_over: str = ""
    # dual algorithms: this identity is the second key of that one (same d=, same pattern,
    # the policy's [key] companion), rotating on its own schedule
    companion_of: str = ""


# What an identity is, as IdentityAdded states it: the one list the fold, the store and
# the listings share.
IDENTITY_FIELDS: tuple[str, ...] = (
    "identity",
    "domain",
    "zone",
    "policy",
    "signing_pattern",
    "customer",
    "mode",
    "role",
    "esp_identity",
    "takes_over",
    "companion_of",
)


@dataclass(frozen=True, kw_only=True)
class RotationRequested(IdentityEvent):
    """An operator asked for a rotation now (the actor and reason say who and why)."""


@dataclass(frozen=True, kw_only=True)
class RotationDeferred(IdentityEvent):
    """A due rotation cannot start yet (no free ping-pong slot, no pre-created CNAME, a
    customer-managed key): looked at again at retry_at; `notice` is shown in status."""

    retry_at: datetime
    notice: str
    code: Reason | None = None  # the notice's kind (None in logs from before codes)


# --- key events ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class KeyGenerated(KeyEvent):
    opens_stream: ClassVar[bool] = True

    policy: str
    algorithm: str
    bits: int
    fingerprint: str  # sha256 of the public key (SubjectPublicKeyInfo DER or raw ed25519)
    zone: str
    record_name: str
    record: str  # the full TXT text to publish
    ttl: int
    replaces: str | None = None
    # CNAME and ping-pong setups: the name receivers query (<selector>._domainkey.<domain>.),
    # a customer CNAME pointing at record_name in the ESP's zone. "" = record_name itself.
    lookup_name: str = ""
    notice: str = ""  # e.g. "only 2 pre-created CNAMEs left", shown in status
    notice_code: Reason | None = None
    pooled: bool = False  # taken from the key pool (its PoolKeyAdded says when it was made)


@dataclass(frozen=True, kw_only=True)
class KeyImported(KeyGenerated):
    """A customer-generated key: the customer publishes it, rotator verifies and signs."""


@dataclass(frozen=True, kw_only=True)
class ActionFailed(KeyEvent):
    """A side effect failed. Never moves the key; the next attempt is at retry_at."""

    action: str
    error: str
    attempt: int
    retry_at: datetime
    details: tuple[JSON, ...] = field(default_factory=tuple)
    code: Reason | None = None  # what kind of failure (None in logs from before codes)


@dataclass(frozen=True, kw_only=True)
class StepParked(KeyEvent):
    """A step failed `attempts` times in a row: it is no longer retried on its own and waits
    for an operator (`rotator resume`), instead of retrying for ever in silence."""

    action: str
    error: str
    attempts: int
    code: Reason | None = None


@dataclass(frozen=True, kw_only=True)
class StepResumed(KeyEvent):
    """An operator asked for a parked step to be tried again now."""


@dataclass(frozen=True, kw_only=True)
class KeyPublished(KeyEvent):
    server: str


@dataclass(frozen=True, kw_only=True)
class KeyVerified(KeyEvent):
    """Every address of every authoritative nameserver answered AA with the record."""

    results: tuple[JSON, ...]
    activate_at: datetime
    # Propagation: seconds the servers took to agree after the first check, and what the
    # lagging ones answered on the last check before they did (empty when all agreed at once).
    waited: float = 0.0
    lagged: tuple[JSON, ...] = field(default_factory=tuple)


@dataclass(frozen=True, kw_only=True)
class KeyActivated(KeyEvent):
    rotate_at: datetime
    previous: str | None = None
    # With standby keys the successor is generated (and verified) long before rotate_at.
    generate_at: datetime | None = None
    # every signer target's outcome: written, reloaded, and whether a probe proved it signs
    targets: tuple[JSON, ...] = field(default_factory=tuple)


@dataclass(frozen=True, kw_only=True)
class KeyCompromised(KeyEvent):
    """Emergency: the key stops signing now and is revoked without draining. `scope` says
    what the operator named (selector, domain, customer, policy or all)."""

    scope: str


@dataclass(frozen=True, kw_only=True)
class KeyWithdrawn(KeyEvent):
    """A key that never signed is given up (a customer's import cancelled, a customer
    leaving): out of the way at once; rotator's copy is wiped, its record (if ours) revoked."""


@dataclass(frozen=True, kw_only=True)
class ActivationRequested(KeyEvent):
    """Switch to this verified (standby) key now instead of at its scheduled time."""


@dataclass(frozen=True, kw_only=True)
class DrainStarted(KeyEvent):
    drain_until: datetime
    successor: str | None = None


@dataclass(frozen=True, kw_only=True)
class RevocationPublished(KeyEvent):
    server: str
    record: str


@dataclass(frozen=True, kw_only=True)
class KeyRevoked(KeyEvent):
    results: tuple[JSON, ...]
    waited: float = 0.0
    lagged: tuple[JSON, ...] = field(default_factory=tuple)


@dataclass(frozen=True, kw_only=True)
class KeyDestroyed(KeyEvent):
    tombstone_until: datetime


@dataclass(frozen=True, kw_only=True)
class TombstoneRemoved(KeyEvent):
    server: str


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        *(IdentityAdded, RotationRequested, RotationDeferred, IdentityRemoved),
        *(PolicyChanged, ModeChanged, KeyGenerated, KeyImported, ActionFailed, StepParked),
        *(StepResumed, KeyPublished, KeyVerified, KeyActivated, KeyCompromised, KeyWithdrawn),
        *(ActivationRequested, DrainStarted, RevocationPublished, KeyRevoked, KeyDestroyed),
        *(TombstoneRemoved, PoolKeyAdded, PoolKeyDiscarded, DriftDetected, DriftResolved),
        *(CustomerDnsBroken, CustomerDnsRestored, SafetyStopped, SafetyReleased),
    )
}


_HINTS: dict[type, dict[str, Any]] = {}


def field_types(cls: type) -> dict[str, Any]:
    """Resolved type hints of a dataclass, for decoding stored values (cached per class)."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def decode(hint: Any, value: Any) -> Any:
    """A stored JSON/SQL value back to the Python type a dataclass field declares."""
    if value is None:
        return None
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return decode(inner[0], value) if len(inner) == 1 else value
    if hint is datetime and isinstance(value, str):
        return datetime.fromisoformat(value)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint(value)
    if hint is bool:
        return bool(value)
    if isinstance(value, list):
        return tuple(value)
    return value


def event_from_record(
    type_name: str,
    common: JSON,
    payload: JSON,
) -> Event:
    """Rebuild an event from its stored columns (inverse of Event.payload + common fields)."""
    cls = EVENT_TYPES.get(type_name)
    if cls is None:
        raise RotatorError(f"unknown event type {type_name!r} in the log; upgrade rotator")
    hints = field_types(cls)
    kwargs: JSON = {}
    for f in dataclasses.fields(cls):
        if f.name in common:
            kwargs[f.name] = common[f.name]
        elif f.name in payload:
            kwargs[f.name] = decode(hints[f.name], payload[f.name])
    return cls(**kwargs)
