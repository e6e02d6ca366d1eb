"""Each identity's own moment in a policy's spread window: the schedule says when rotations
are due, the spread moves every identity to a stable point after that moment so that a
customer base is never due at one instant."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta


def spread_offset(identity: str, spread: timedelta) -> timedelta:
    """Where in [0, spread) this identity rotates, in whole seconds. Derived from its name
    alone: the same after a restart, nothing stored, evenly spread over many names."""
    window = int(spread.total_seconds())
    if window <= 0:
        return timedelta(0)
    digest = hashlib.sha256(identity.encode()).digest()
    return timedelta(seconds=int.from_bytes(digest[:8], "big") % window)


def explained(due: datetime, now: datetime, spread: timedelta) -> bool:
    """Whether work due at `due` is still within the spread window at `now`: what a spread
    schedule makes due a few at a time. Work overdue by the whole spread (or any work of a
    policy without one) is not: the schedule did not make it due this way."""
    return spread > timedelta(0) and due > now - spread
