"""The read model monitoring scrapes (rotator/metrics/daemon.py): counts grouped by bounded labels,
per-identity times only on request. Kept apart from ports.py, which holds the Protocols."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple


class KeyCount(NamedTuple):
    """Live keys (not destroyed) of one state, policy and next action."""

    state: str
    policy: str
    next_action: str  # "" for none
    keys: int
    failing: int  # whose next step failed at least once (attempts > 0)
    parked: int
    drift: int  # with an open drift finding (the watch's, or a last error coded drift)
    oldest_active: datetime | None  # when the oldest of them became active (active keys)


class IdentityCount(NamedTuple):
    """Identities (not removed) of one mode and role."""

    mode: str
    role: str
    identities: int
    without_active: int  # no key signing for them
    awaiting_customer_dns: int  # their notice or a live key's last error has a customer code
    customer_dns_broken: int  # the customer's DNS stopped leading to the key (watch)


class IdentityTimes(NamedTuple):
    domain: str
    policy: str
    active_since: datetime | None  # when its active key became active
    rotation_due_at: datetime | None


@dataclass(frozen=True)
class StoreCounts:
    keys: tuple[KeyCount, ...]
    destroyed: int  # destroyed keys pile up for ever: counted, never grouped
    identities: tuple[IdentityCount, ...]
    next_rotation: datetime | None
    next_action: datetime | None
    per_identity: tuple[IdentityTimes, ...] = ()
