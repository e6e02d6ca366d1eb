"""Rows of the event store <-> events and projection states, and the hash of an event row."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

from ...domain import events as ev
from ...domain.model import IdentityState, KeyState
from ...ports import StoredEvent
from ...timeutil import iso, parse_iso

T = TypeVar("T")
GENESIS = "0" * 64


_NAMES: dict[type, tuple[str, ...]] = {}


def _names(cls: type) -> tuple[str, ...]:
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def to_row(obj: Any) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name in _names(type(obj)):
        v = getattr(obj, name)
        if v is None or type(v) is str or type(v) is int:
            row[name] = v
            continue
        if isinstance(v, datetime):
            v = iso(v)
        elif isinstance(v, Enum):
            v = v.value
        elif isinstance(v, bool):
            v = int(v)
        row[name] = v
    return row


def from_row(cls: type[T], row: dict[str, Any]) -> T:
    """A projection row back to its dataclass, each column decoded by the field's type."""
    convert = _converters(cls)
    data = {}
    for name, value in row.items():
        fn = convert[name]
        data[name] = value if fn is None or value is None else fn(value)
    return cls(**data)


_CONVERTERS: dict[type, dict[str, Callable[[Any], Any] | None]] = {}


def _converters(cls: type) -> dict[str, Callable[[Any], Any] | None]:
    # Worked out once per class from the field types: a million rows must not each pay
    # for typing introspection.
    cached = _CONVERTERS.get(cls)
    if cached is not None:
        return cached
    out: dict[str, Callable[[Any], Any] | None] = _CONVERTERS.setdefault(cls, {})
    for name, hint in ev.field_types(cls).items():
        if _is_datetime(hint):
            out[name] = _datetime
        elif hint in (str, int, "str", "int") or _optional(hint) in (str, int):
            out[name] = None
        else:
            out[name] = _decoder(hint)
    return out


def _decoder(hint: Any) -> Callable[[Any], Any]:
    """The column's decoder: enums and flags directly (most of a row's columns), the rest
    through the events' codec."""
    inner = _optional(hint) or hint
    if isinstance(inner, type) and issubclass(inner, Enum):
        members = inner._value2member_map_
        return lambda value: members[value] if value in members else inner(value)
    if inner is bool:
        return bool
    return functools.partial(ev.decode, hint)


def _optional(hint: Any) -> Any:
    args = [a for a in getattr(hint, "__args__", ()) if a is not type(None)]
    return args[0] if len(args) == 1 else None


def _is_datetime(hint: Any) -> bool:
    return hint is datetime or datetime in getattr(hint, "__args__", ())


def _datetime(value: Any) -> Any:
    return parse_iso(value) if isinstance(value, str) else value


def key_from_row(row: dict[str, Any]) -> KeyState:
    return from_row(KeyState, row)


def identity_from_row(row: dict[str, Any]) -> IdentityState:
    return from_row(IdentityState, row)


# json.dumps(obj, sort_keys=True, separators=(",", ":")) without building an encoder per call
canonical_json = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


def event_hash(row: dict[str, Any]) -> str:
    """sha256 over the canonical JSON of an event row (minus its own hash and MAC)."""
    body = {k: row[k] for k in sorted(row) if k not in ("hash", "mac")}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


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
