"""The key pool's stream: keys generated ahead of need, before any identity takes one."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Event

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
