"""The events of an identity's stream: it is added, asked to rotate, deferred, changed
(policy, mode), watched (the customer's DNS) and removed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from ..reasons import Reason
from ..states import Mode, Role
from .base import IdentityEvent


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


@dataclass(frozen=True, kw_only=True)
class CustomerDnsBroken(IdentityEvent):
    """The customer's delegation or CNAMEs for this identity are gone or point elsewhere."""

    problem: str
    code: Reason | None = None  # the problem's kind (None in logs from before codes)


@dataclass(frozen=True, kw_only=True)
class CustomerDnsRestored(IdentityEvent):
    """The customer's DNS leads to the ESP's records again."""
