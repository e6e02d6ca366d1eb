"""The events of a key's stream, from its generation to its tombstone's removal, and the
drift of its published record.

Events never carry private key material: only the public key and its fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from ..reasons import Reason
from .base import JSON, KeyEvent


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


# --- keeping watch ---------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DriftDetected(KeyEvent):
    """A nameserver does not serve what rotator published for an active or draining key
    (record gone or changed, an answer without AA); rotator republished what it owns."""

    server: str
    answered: str
    republished: bool = False


@dataclass(frozen=True, kw_only=True)
class DriftResolved(KeyEvent):
    """Every authoritative nameserver serves the key's record as published again."""
