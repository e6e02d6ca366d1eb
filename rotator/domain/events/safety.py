"""The safety valve's stream: mass work held for an operator, and released."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Event

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
