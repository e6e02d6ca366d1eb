"""Event types of the customer lifecycle (removal, policy and mode changes), the key pool,
and keeping watch (drift, customer DNS, the safety valve)."""

from __future__ import annotations

from dataclasses import dataclass

from .event_base import Event, IdentityEvent, KeyEvent
from .reasons import Reason
from .states import Mode


@dataclass(frozen=True, kw_only=True)
class IdentityRemoved(IdentityEvent):
    """Offboarded: signs nothing, rotates never; its selectors are never used again."""

    now: bool = False  # --now: the active key was revoked without its drain window


@dataclass(frozen=True, kw_only=True)
class PolicyChanged(IdentityEvent):
    """The identity's next key follows `policy` (algorithm, size, schedule...)."""

    policy: str
    previous: str


@dataclass(frozen=True, kw_only=True)
class ModeChanged(IdentityEvent):
    """The next key is placed the new way; the active key signs until it is verified."""

    mode: Mode
    zone: str
    previous_mode: Mode
    previous_zone: str


# --- the key pool ----------------------------------------------------------------------

POOL_STREAM = "pool"


@dataclass(frozen=True, kw_only=True)
class PoolEvent(Event):
    """A key generated ahead of need: it belongs to no identity yet, so it has no key
    stream; its events share the pool's stream and carry its key_id (rotator log --key)."""

    key_id: str

    @property
    def stream_id(self) -> str:
        return POOL_STREAM


@dataclass(frozen=True, kw_only=True)
class PoolKeyAdded(PoolEvent):
    """Generated into the key store's pool; a KeyGenerated with pooled=true takes it."""

    algorithm: str
    bits: int
    fingerprint: str


@dataclass(frozen=True, kw_only=True)
class PoolKeyDiscarded(PoolEvent):
    """Wiped unused (an emergency over every key treats the pool as compromised)."""


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


@dataclass(frozen=True, kw_only=True)
class CustomerDnsBroken(IdentityEvent):
    """The customer's delegation or CNAMEs for this identity are gone or point elsewhere."""

    problem: str
    code: Reason | None = None  # the problem's kind (None in logs from before codes)


@dataclass(frozen=True, kw_only=True)
class CustomerDnsRestored(IdentityEvent):
    """The customer's DNS leads to the ESP's records again."""


SAFETY_STREAM = "safety"


@dataclass(frozen=True, kw_only=True)
class SafetyEvent(Event):
    @property
    def stream_id(self) -> str:
        return SAFETY_STREAM


@dataclass(frozen=True, kw_only=True)
class SafetyStopped(SafetyEvent):
    """A tick would have revoked or replaced more than the allowed share of the active
    keys at once: it did not, and waits for an operator (`rotator safety release`)."""

    what: str
    count: int
    active: int
    max_share: float


@dataclass(frozen=True, kw_only=True)
class SafetyReleased(SafetyEvent):
    """An operator let the held work go ahead."""
