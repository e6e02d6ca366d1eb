"""Rendering for the terminal: tables, relative times, audit log lines."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime

import click
from rich.console import Console
from rich.table import Table

from ..domain.errors import InputError
from ..domain.policy import parse_duration
from ..ports import StoredEvent
from ..timeutil import iso, parse_iso, utcnow

# Piped output (scripts, tests, `| grep`) gets a wide table instead of 80-column wrapping.
# No markup: customer names, domains and DNS answers are data, never formatting ("Acme[/]").
console = Console(width=None if sys.stdout.isatty() else 200, markup=False)
err_console = Console(stderr=True, markup=False)

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def clean(value: object) -> str:
    """Text safe for a terminal: control characters (a newline that would forge an extra
    log line, an escape sequence) are shown escaped."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))


def say(text: object, style: str | None = None) -> None:
    # soft_wrap: a line is a line (grep, log scrapers), never folded at the terminal width
    console.print(clean(text), style=style, soft_wrap=True)


def warn(text: object) -> None:
    err_console.print(f"warning: {clean(text)}", soft_wrap=True)


def add_row(table: Table, *values: object) -> None:
    table.add_row(*(clean(v) for v in values))


EMERGENCY_PREFIX = "emergency: "  # how the log shows a step an emergency set off


def display_reason(stored: StoredEvent) -> str:
    e = stored.event
    if getattr(e, "emergency", False):
        return f"{EMERGENCY_PREFIX}{e.reason}"
    return e.reason


def print_event(stored: StoredEvent, as_json: bool) -> None:
    e = stored.event
    reason = display_reason(stored)
    common = {
        "position": stored.position,
        "at": iso(e.at),
        "type": type(e).__name__,
        "domain": getattr(e, "domain", None),
        # a companion's events name it (example.com~ed25519): its domain is the other's
        "identity": getattr(e, "identity", None),
        "selector": getattr(e, "selector", None),
        "key_id": getattr(e, "key_id", None),
        "actor": e.actor,
        "reason": reason,
    }
    if as_json:
        click.echo(json.dumps({**common, "payload": e.payload(), "hash": stored.hash}))
        return
    detail = {
        k: v
        for k, v in e.payload().items()
        if k not in ("record", "results", "details", "emergency", "lagged", "origin")
    }
    extra = " ".join(f"{k}={v}" for k, v in detail.items() if v not in (None, "", []))
    who = f" by {e.actor}" + (f" ({reason})" if reason else "")
    who += f" [{e.origin}]" if e.origin else ""
    click.echo(
        clean(
            f"{stored.position:>6} {iso(e.at)[:23]} {common['type']:<20} "
            f"{common['identity'] or common['domain'] or ''} {common['selector'] or ''}{who} "
            f"{extra}".rstrip()
        )
    )


def time_arg(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_iso(value)
    except ValueError:
        pass
    try:
        return datetime.now(UTC) - parse_duration(value)
    except ValueError:
        raise InputError(
            f"{name}: {value!r} is neither an ISO time (2026-11-24T10:00:00Z) nor a duration"
        ) from None


def when(value: str | datetime | None, now: datetime | None = None) -> str:
    """'2026-11-24T12:00:00Z (in 3d)' / '(5m ago)' / '(now)'."""
    if value is None:
        return "-"
    dt = parse_iso(value) if isinstance(value, str) else value
    delta = round((dt - (now or utcnow())).total_seconds())
    if delta == 0:
        rel = "now"
    else:
        span = human(abs(delta))
        rel = f"in {span}" if delta > 0 else f"{span} ago"
    return f"{iso(dt)[:19]}Z ({rel})"


def human(secs: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs / size:.1f}".removesuffix(".0") + unit
    return f"{secs}s"
