"""Events: frozen dataclasses, one per fact. The log of these is the source of truth; every
projection (key state, identity state) is a fold over them (see model.py).

Events never carry private key material: only the public key and its fingerprint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from .errors import RotatorError

JSON = dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class Event:
    at: datetime
    actor: str = "rotator"
    reason: str = ""

    kind: ClassVar[str] = "event"

    @property
    def stream_id(self) -> str:
        raise NotImplementedError

    def payload(self) -> JSON:
        """Fields specific to this event type, JSON-ready (datetimes as ISO strings)."""
        out: JSON = {}
        for f in dataclasses.fields(self):
            if f.name in _COMMON:
                continue
            out[f.name] = _to_json(getattr(self, f.name))
        return out


@dataclass(frozen=True, kw_only=True)
class KeyEvent(Event):
    key_id: str
    identity: str
    domain: str
    selector: str

    @property
    def stream_id(self) -> str:
        return f"key:{self.key_id}"


@dataclass(frozen=True, kw_only=True)
class IdentityEvent(Event):
    identity: str
    domain: str

    @property
    def stream_id(self) -> str:
        return f"identity:{self.identity}"


_COMMON = frozenset({"at", "actor", "reason", "key_id", "identity", "domain", "selector"})


# --- identity events -------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class IdentityAdded(IdentityEvent):
    """A signing identity (d= domain + policy + DNS zone) is now managed by rotator."""

    zone: str
    policy: str
    signing_pattern: str  # SigningTable pattern, e.g. "*@example.com"; "" for ESP identities
    customer: str = ""
    mode: str = "third-party"
    role: str = "customer"
    esp_identity: str = ""  # the ESP identity that adds the feedback-loop signature


@dataclass(frozen=True, kw_only=True)
class RotationRequested(IdentityEvent):
    """An operator asked for a rotation now (the actor and reason say who and why)."""


@dataclass(frozen=True, kw_only=True)
class RotationDeferred(IdentityEvent):
    """A due rotation cannot start yet (no free ping-pong slot, no pre-created CNAME, a
    customer-managed key): looked at again at retry_at; `notice` is shown in status."""

    retry_at: datetime
    notice: str


# --- key events ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class KeyGenerated(KeyEvent):
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


@dataclass(frozen=True, kw_only=True)
class KeyPublished(KeyEvent):
    server: str


@dataclass(frozen=True, kw_only=True)
class KeyVerified(KeyEvent):
    """Every address of every authoritative nameserver answered AA with the record."""

    results: tuple[JSON, ...]
    activate_at: datetime


@dataclass(frozen=True, kw_only=True)
class KeyActivated(KeyEvent):
    rotate_at: datetime
    previous: str | None = None
    # With standby keys the successor is generated (and verified) long before rotate_at.
    generate_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class KeyCompromised(KeyEvent):
    """Emergency: the key stops signing now and is revoked without draining. `scope` says
    what the operator named (selector, domain, customer, policy or all)."""

    scope: str


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


@dataclass(frozen=True, kw_only=True)
class KeyDestroyed(KeyEvent):
    tombstone_until: datetime


@dataclass(frozen=True, kw_only=True)
class TombstoneRemoved(KeyEvent):
    server: str


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        IdentityAdded,
        RotationRequested,
        RotationDeferred,
        KeyGenerated,
        KeyImported,
        ActionFailed,
        KeyPublished,
        KeyVerified,
        KeyActivated,
        KeyCompromised,
        ActivationRequested,
        DrainStarted,
        RevocationPublished,
        KeyRevoked,
        KeyDestroyed,
        TombstoneRemoved,
    )
}


def _to_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
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
    kwargs: JSON = {}
    for f in dataclasses.fields(cls):
        if f.name in common:
            kwargs[f.name] = common[f.name]
        elif f.name in payload:
            value = payload[f.name]
            if f.type in ("datetime", "datetime | None") and isinstance(value, str):
                value = datetime.fromisoformat(value)
            elif isinstance(value, list):
                value = tuple(value)
            kwargs[f.name] = value
    return cls(**kwargs)
