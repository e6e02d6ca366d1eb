"""When rotations are due: a policy's schedule (an interval, or a cron expression through an
injected factory), and each identity's own moment in the policy's spread window, a stable
point after the schedule's moment so that a customer base is never due at one instant."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from .durations import format_duration


def spread_offset(identity: str, spread: timedelta) -> timedelta:
    """Where in [0, spread) this identity rotates, in whole seconds. Derived from its name
    alone: the same after a restart, nothing stored, evenly spread over many names."""
    window = int(spread.total_seconds())
    if window <= 0:
        return timedelta(0)
    digest = hashlib.sha256(identity.encode()).digest()
    return timedelta(seconds=int.from_bytes(digest[:8], "big") % window)


class Schedule(Protocol):
    """When the next rotation is due after `after` (an aware UTC datetime)."""

    def next_rotation(self, after: datetime) -> datetime: ...

    def describe(self) -> str: ...

    def min_interval(self) -> timedelta: ...


@dataclass(frozen=True)
class IntervalSchedule:
    interval: timedelta

    def next_rotation(self, after: datetime) -> datetime:
        return after + self.interval

    def describe(self) -> str:
        return f"every {format_duration(self.interval)}"

    def min_interval(self) -> timedelta:
        return self.interval


CronFactory = Callable[[str], Schedule]
