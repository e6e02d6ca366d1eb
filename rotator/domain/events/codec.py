"""Every event type by its stored name, and an event rebuilt from its stored columns."""

from __future__ import annotations

import dataclasses
import types
import typing
from datetime import datetime
from enum import Enum
from typing import Any

from ..errors import RotatorError
from .base import JSON, Event
from .identities import (
    CustomerDnsBroken,
    CustomerDnsRestored,
    IdentityAdded,
    IdentityRemoved,
    ModeChanged,
    PolicyChanged,
    RotationDeferred,
    RotationRequested,
)
from .keys import (
    ActionFailed,
    ActivationRequested,
    DrainStarted,
    DriftDetected,
    DriftResolved,
    KeyActivated,
    KeyCompromised,
    KeyDestroyed,
    KeyGenerated,
    KeyImported,
    KeyPublished,
    KeyRevoked,
    KeyVerified,
    KeyWithdrawn,
    RevocationPublished,
    StepParked,
    StepResumed,
    TombstoneRemoved,
)
from .pool import PoolKeyAdded, PoolKeyDiscarded
from .safety import SafetyReleased, SafetyStopped
from .tokens import TokenCreated, TokenRevoked
from .webhooks import WebhookParked, WebhookRemoved, WebhookResumed, WebhookSubscribed

EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        *(IdentityAdded, RotationRequested, RotationDeferred, IdentityRemoved),
        *(PolicyChanged, ModeChanged, KeyGenerated, KeyImported, ActionFailed, StepParked),
        *(StepResumed, KeyPublished, KeyVerified, KeyActivated, KeyCompromised, KeyWithdrawn),
        *(ActivationRequested, DrainStarted, RevocationPublished, KeyRevoked, KeyDestroyed),
        *(TombstoneRemoved, PoolKeyAdded, PoolKeyDiscarded, DriftDetected, DriftResolved),
        *(CustomerDnsBroken, CustomerDnsRestored, SafetyStopped, SafetyReleased),
        *(TokenCreated, TokenRevoked),
        *(WebhookSubscribed, WebhookRemoved, WebhookParked, WebhookResumed),
    )
}


_HINTS: dict[type, dict[str, Any]] = {}


def field_types(cls: type) -> dict[str, Any]:
    """Resolved type hints of a dataclass, for decoding stored values (cached per class)."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def decode(hint: Any, value: Any) -> Any:
    """A stored JSON/SQL value back to the Python type a dataclass field declares."""
    if value is None:
        return None
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return decode(inner[0], value) if len(inner) == 1 else value
    if hint is datetime and isinstance(value, str):
        return datetime.fromisoformat(value)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint(value)
    if hint is bool:
        return bool(value)
    if isinstance(value, list):
        return tuple(value)
    return value


def event_from_record(
    type_name: str,
    common: JSON,
    payload: JSON,
) -> Event:
    """Rebuild an event from its stored columns (inverse of Event.payload + common fields)."""
    cls = EVENT_TYPES.get(type_name)
    if cls is None:
        raise RotatorError(f"unknown event type {type_name!r} in the log; upgrade rotator")
    hints = field_types(cls)
    kwargs: JSON = {}
    for f in dataclasses.fields(cls):
        if f.name in common:
            kwargs[f.name] = common[f.name]
        elif f.name in payload:
            kwargs[f.name] = decode(hints[f.name], payload[f.name])
    return cls(**kwargs)
