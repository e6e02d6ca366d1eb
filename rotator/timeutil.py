"""UTC timestamps with one fixed text form, so that string order is time order in SQLite."""

from __future__ import annotations

import functools
from datetime import UTC, datetime

_FMT = "%Y-%m-%dT%H:%M:%S.%f+00:00"


def utcnow() -> datetime:
    return datetime.now(UTC)


# A batch's events share a handful of instants (one tick's `now`): format and parse each once.
@functools.lru_cache(maxsize=4096)
def iso(dt: datetime) -> str:
    if dt.tzinfo is None:
        raise ValueError("naive datetime: rotator only handles aware UTC datetimes")
    return dt.astimezone(UTC).strftime(_FMT)


@functools.lru_cache(maxsize=4096)
def parse_iso(text: str) -> datetime:
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


class SystemClock:
    def now(self) -> datetime:
        return utcnow()
