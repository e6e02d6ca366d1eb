"""The event base classes and how an event becomes its stored payload; the event types
themselves are in the modules beside this one, one per stream."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, TypeVar

JSON = dict[str, Any]


def key_stream(key_id: str) -> str:
    """The event stream of one key (its optimistic-concurrency unit)."""
    return f"key:{key_id}"


def identity_stream(identity: str) -> str:
    return f"identity:{identity}"


@dataclass(frozen=True, kw_only=True)
class Event:
    at: datetime
    actor: str = "rotator"  # who says they did it (--actor, else the login name)
    reason: str = ""
    # who the system says did it: the real uid of the command (and SUDO_USER), whatever
    # --actor claims; empty for the daemon's own steps
    origin: str = ""

    kind: ClassVar[str] = "event"
    # True for the event that creates its stream (expected version 0).
    opens_stream: ClassVar[bool] = False

    @property
    def stream_id(self) -> str:
        raise NotImplementedError

    def payload(self) -> JSON:
        """Fields specific to this event type, JSON-ready (datetimes as ISO strings). Flags
        in _SPARSE are written only when set, so older events keep their exact form."""
        out: JSON = {}
        for name, sparse in payload_fields(type(self)):
            value = getattr(self, name)
            if sparse and not value:
                continue
            out[name] = value if type(value) in _PLAIN else to_json(value)
        return out


@dataclass(frozen=True, kw_only=True)
class KeyEvent(Event):
    key_id: str
    identity: str
    domain: str
    selector: str
    # Set on every step an emergency sets off (revocation, wipe, the replacement up to its
    # activation): actor and reason are then the operator's who declared it.
    emergency: bool = False

    @property
    def stream_id(self) -> str:
        return key_stream(self.key_id)


@dataclass(frozen=True, kw_only=True)
class IdentityEvent(Event):
    identity: str
    domain: str

    @property
    def stream_id(self) -> str:
        return identity_stream(self.identity)


_E = TypeVar("_E", bound=Event)


def not_before(events: Sequence[_E], floor: datetime | None, *, running: bool = True) -> list[_E]:
    """The events with no time before `floor` (the time of the event recorded before them)
    and, when `running`, non-decreasing in the order given: an event's time says when it
    was recorded, so no later log position may claim an earlier time. Times already in
    order are kept as they are."""
    out: list[_E] = []
    for event in events:
        if floor is not None and event.at < floor:
            event = dataclasses.replace(event, at=floor)
        if running:
            floor = event.at
        out.append(event)
    return out


_COMMON = frozenset({"at", "actor", "reason", "key_id", "identity", "domain", "selector"})
_SPARSE = frozenset(
    {
        *("emergency", "waited", "lagged", "origin", "targets", "pooled", "takes_over"),
        *("companion_of", "code", "notice_code"),
    }
)


_PLAIN = frozenset({str, int, float, bool, type(None)})


def to_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


_PAYLOAD_FIELDS: dict[type, tuple[tuple[str, bool], ...]] = {}


def payload_fields(cls: type) -> tuple[tuple[str, bool], ...]:
    """(name, sparse) of the fields a payload holds, per event class."""
    fields = _PAYLOAD_FIELDS.get(cls)
    if fields is None:
        fields = _PAYLOAD_FIELDS[cls] = tuple(
            (f.name, f.name in _SPARSE) for f in dataclasses.fields(cls) if f.name not in _COMMON
        )
    return fields
