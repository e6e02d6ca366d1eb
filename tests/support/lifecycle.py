"""What the tests expect of a key's life, stated once."""

from __future__ import annotations

# The events of one key that goes the whole way, in order (failures and retries aside).
LIFECYCLE_EVENTS = (
    "KeyGenerated",
    "KeyPublished",
    "KeyVerified",
    "KeyActivated",
    "DrainStarted",
    "RevocationPublished",
    "KeyRevoked",
    "KeyDestroyed",
    "TombstoneRemoved",
)
