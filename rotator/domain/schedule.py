"""Each identity's own moment in a policy's spread window: the schedule says when rotations
are due, the spread moves every identity to a stable point after that moment so that a
customer base is never due at one instant."""

from __future__ import annotations

import hashlib
from datetime import timedelta


def spread_offset(identity: str, spread: timedelta) -> timedelta:
    """Where in [0, spread) this identity rotates, in whole seconds. Derived from its name
    alone: the same after a restart, nothing stored, evenly spread over many names."""
    window = int(spread.total_seconds())
    if window <= 0:
        return timedelta(0)
    digest = hashlib.sha256(identity.encode()).digest()
    return timedelta(seconds=int.from_bytes(digest[:8], "big") % window)
