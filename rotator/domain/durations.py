"""Durations as policies and commands write them: "30s", "5m", "1h30m", "5d", "2w", or a
number of seconds."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(
    r"^\s*(?:(\d+)\s*w)?\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*"
    r"(?:(\d+)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*$"
)
MAX_DURATION_S = 10 * 366 * 86400


def parse_duration(value: object) -> timedelta:
    """'30s', '5m', '1h30m', '5d', '2w', or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError('expected a duration like "5d" or "30s"')
    if isinstance(value, int | float):
        if not 0 <= value <= MAX_DURATION_S:  # also rejects nan
            raise ValueError(f"must be between 0 and {MAX_DURATION_S}s (10 years)")
        return timedelta(seconds=value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError('expected a duration like "5d" or "30s"')
    m = _DURATION.match(value)
    if not m or not any(m.groups()):
        raise ValueError(f'{value!r} is not a duration; use e.g. "5d", "12h", "30s"')
    w, d, h, mi, s = m.groups()
    total = (
        int(w or 0) * 604800
        + int(d or 0) * 86400
        + int(h or 0) * 3600
        + int(mi or 0) * 60
        + float(s or 0)
    )
    if total > MAX_DURATION_S:
        raise ValueError(f"{value!r} is longer than 10 years")
    return timedelta(seconds=total)


def format_duration(td: timedelta) -> str:
    secs = td.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size and secs % size == 0:
            return f"{int(secs // size)}{unit}"
    return f"{secs:g}s"
