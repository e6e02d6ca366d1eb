"""Rows of the event store <-> events and projection states, and the hash of an event row."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

from ..domain import events as ev
from ..domain.model import IdentityState, KeyState
from ..ports import StoredEvent
from ..timeutil import iso, parse_iso

T = TypeVar("T")
GENESIS = "0" * 64


def to_row(obj: Any) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, datetime):
            v = iso(v)
        elif isinstance(v, Enum):
            v = v.value
        elif isinstance(v, bool):
            v = int(v)
        row[f.name] = v
    return row


def from_row(cls: type[T], row: dict[str, Any]) -> T:
    """A projection row back to its dataclass, each column decoded by the field's type."""
    hints = ev.field_types(cls)
    data = {}
    for name, value in row.items():
        hint = hints[name]
        if value is not None and isinstance(value, str) and _is_datetime(hint):
            data[name] = parse_iso(value)
        else:
            data[name] = ev.decode(hint, value)
    return cls(**data)


def _is_datetime(hint: Any) -> bool:
    return hint is datetime or datetime in getattr(hint, "__args__", ())


def key_from_row(row: dict[str, Any]) -> KeyState:
    return from_row(KeyState, row)


def identity_from_row(row: dict[str, Any]) -> IdentityState:
    return from_row(IdentityState, row)


def event_hash(row: dict[str, Any]) -> str:
    """sha256 over the canonical JSON of an event row (minus its own hash and MAC)."""
    body = {k: row[k] for k in sorted(row) if k not in ("hash", "mac")}
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def event_from_row(row: dict[str, Any]) -> StoredEvent:
    common = {
        "at": parse_iso(row["at"]),
        "actor": row["actor"],
        "reason": row["reason"],
        "identity": row["identity"],
        "domain": row["domain"],
        "key_id": row["key_id"],
        "selector": row["selector"],
    }
    event = ev.event_from_record(row["type"], common, json.loads(row["payload"]))
    return StoredEvent(
        position=row["position"],
        stream_id=row["stream_id"],
        version=row["version"],
        event=event,
        hash=row["hash"],
        prev_hash=row["prev_hash"],
    )


class Appended(list[StoredEvent]):
    """What append() wrote, plus the projections the fold computed for it (so callers never
    read back what they just recorded)."""

    def __init__(
        self,
        stored: list[StoredEvent],
        keys: dict[str, KeyState],
        identities: dict[str, IdentityState],
    ) -> None:
        super().__init__(stored)
        self.keys = keys
        self.identities = identities
