"""Replaying the log with bounded memory, for `db rebuild` over millions of events: a
key's events arrive together from the events_key index (key_id, then position), an
identity's from events_identity; each stream is folded, compared with its live row (read
in the same order: a merge join) and dropped before the next is read. One state and one
live row are held at a time, never the whole projection.

Events are decoded and live rows compared as store_rows decodes them (event_from_row,
from_row stay the definitions; the tests hold these equal to them), with the per-field
work planned once per class instead of once per value.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import operator
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

from ...domain import events as ev
from ...domain.errors import StoreError
from ...domain.model import IdentityState, KeyState, apply_identity, apply_key
from ...timeutil import parse_iso
from .rows import event_from_row

S = TypeVar("S")
L = TypeVar("L")
T = TypeVar("T")


def _getter(make: Callable[..., Callable[[Any], Any]], items: list[Any]) -> Callable[[Any], Any]:
    """make(*items) (itemgetter, attrgetter), always returning a tuple."""
    if not items:
        return lambda obj: ()
    if len(items) == 1:
        one = make(items[0])
        return lambda obj: (one(obj),)
    return make(*items)


# --- decoding events ----------------------------------------------------------------------

# The columns an event is decoded from, in this order; streams select them.
EVENT_COLUMNS = (
    *("type", "payload"),
    *("at", "actor", "reason", "identity", "domain", "key_id", "selector"),  # the common ones
)
_COMMON = {name: i for i, name in enumerate(EVENT_COLUMNS[2:])}  # store_rows.event_from_row's
IDENTITY, KEY_ID = EVENT_COLUMNS.index("identity"), EVENT_COLUMNS.index("key_id")


def stream_sql(column: str) -> str:
    """Every event with a `column` (key_id, identity), one stream after another: the
    (column, rowid) index order, so SQLite sorts nothing (a test holds it to that)."""
    return (
        f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE {column} IS NOT NULL "
        f"ORDER BY {column}, position"
    )


def _as_is(value: Any) -> Any:
    return value


def _plain(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _datetime(value: Any) -> Any:
    return datetime.fromisoformat(value) if isinstance(value, str) else _plain(value)


def _optional(inner: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else inner(value)


def decoder(hint: Any) -> Callable[[Any], Any]:
    """ev.decode(hint, value) with its tests on the hint made once, not once per value."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _optional(decoder(inner[0])) if len(inner) == 1 else _as_is
    if hint is datetime:
        return _datetime
    if isinstance(hint, type) and issubclass(hint, Enum):
        return _optional(hint)
    if hint is bool:
        return _optional(bool)
    return _plain


@dataclass(frozen=True)
class _Plan:
    common: tuple[str, ...]  # the fields taken from the common columns...
    values: Callable[[Sequence[Any]], tuple[Any, ...]]  # ...and their values in a row
    # field -> how its payload value is decoded; None: as _plain does (most fields, inlined)
    payload: dict[str, Callable[[Any], Any] | None]
    # For building an event without running its generated __init__ (None: run it): every
    # field in order with its default (required ones are overwritten), the fields made by a
    # default_factory, and the required fields.
    template: dict[str, Any] | None
    factories: tuple[tuple[str, Callable[[], Any]], ...]
    required: frozenset[str]


_PLANS: dict[type[ev.Event], _Plan] = {}


def _inline(decode: Callable[[Any], Any]) -> Callable[[Any], Any] | None:
    return None if decode is _plain else decode


def _plan(cls: type[ev.Event]) -> _Plan:
    """Where each field of an event class comes from (worked out once per class)."""
    plan = _PLANS.get(cls)
    if plan is None:
        hints = ev.field_types(cls)
        fields = dataclasses.fields(cls)
        common = [f.name for f in fields if f.name in _COMMON]
        # an __init__ that only assigns (no __post_init__, every field an argument) can be
        # skipped: assigning the attributes directly is all it does
        direct = not hasattr(cls, "__post_init__") and all(f.init for f in fields)
        plan = _PLANS[cls] = _Plan(
            tuple(common),
            _getter(operator.itemgetter, [2 + _COMMON[n] for n in common]),
            {f.name: _inline(decoder(hints[f.name])) for f in fields if f.name not in _COMMON},
            {f.name: None if f.default is dataclasses.MISSING else f.default for f in fields}
            if direct
            else None,
            tuple(
                (f.name, f.default_factory)
                for f in fields
                if f.default_factory is not dataclasses.MISSING
            ),
            frozenset(
                f.name
                for f in fields
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            ),
        )
    return plan


# the C scanner json.loads runs after skipping whitespace, which compact payloads lack
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def decode_event(row: Sequence[Any]) -> ev.Event:
    """The event of a row of EVENT_COLUMNS: what store_rows.event_from_row builds, without
    the StoredEvent around it, without looking up each field's type for each event and
    without the frozen dataclass's __init__ (one object.__setattr__ per field)."""
    cls = ev.EVENT_TYPES.get(row[0])
    text = row[1]
    try:
        payload, end = _scan(text, 0)
    except (StopIteration, ValueError, TypeError):
        end = -1
    if cls is None or end != len(text) or not isinstance(payload, dict):
        return _slow(row)  # an unknown type, or a payload not as written: the reference path
    plan = _plan(cls)
    kwargs = dict(zip(plan.common, plan.values(row), strict=True))
    if "at" in kwargs:
        kwargs["at"] = parse_iso(kwargs["at"])
    decoders = plan.payload
    for name, value in payload.items():
        if name in decoders:
            decode = decoders[name]
            if decode is not None:
                kwargs[name] = decode(value)
            else:
                kwargs[name] = tuple(value) if isinstance(value, list) else value
    if plan.template is None or not plan.required <= kwargs.keys():
        return cls(**kwargs)  # (a missing field raises as it would have)
    event = object.__new__(cls)
    attrs = event.__dict__
    attrs.update(plan.template)  # field order first: updating a key keeps its place
    attrs.update(kwargs)
    for name, factory in plan.factories:
        if name not in kwargs:
            attrs[name] = factory()
    return event


def _slow(row: Sequence[Any]) -> ev.Event:
    return event_from_row({**dict(zip(EVENT_COLUMNS, row, strict=True)), **_NO_STREAM}).event


# event_from_row also reads these; the events themselves do not depend on them
_NO_STREAM = {"position": 0, "stream_id": "", "version": 0, "hash": "", "prev_hash": ""}


# --- comparing live rows with replayed states ---------------------------------------------


def _is_datetime(hint: Any) -> bool:
    # store_rows.from_row's test: such a column's text is parsed with parse_iso
    return hint is datetime or datetime in getattr(hint, "__args__", ())


def _is_plain(hint: Any) -> bool:
    """Whether from_row keeps a column's SQLite value as it is (ev.decode of a scalar)."""
    if _is_datetime(hint):
        return False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return len(inner) != 1 or _is_plain(inner[0])
    return hint in (str, int, float)


def _column(hint: Any) -> Callable[[Any], Any]:
    """from_row's decoding of one column."""
    decode = decoder(hint)
    if not _is_datetime(hint):
        return decode
    return lambda value: parse_iso(value) if isinstance(value, str) else decode(value)


def row_matcher(cls: type, columns: Sequence[str]) -> Callable[[Sequence[Any], Any], bool]:
    """Whether a projection row's values (in `columns` order) decode, as from_row decodes
    them, to fields equal to those of `state`: the field-by-field comparison of a rebuild,
    without building a state per row. Columns kept as they are compare as one tuple."""
    hints = ev.field_types(cls)
    fields = [c for c in columns if c != "mac"]
    if sorted(fields) != sorted(f.name for f in dataclasses.fields(cls)):
        return lambda values, state: False  # not what from_row expects: let it decide
    kept = [(i, c) for i, c in enumerate(columns) if c != "mac" and _is_plain(hints[c])]
    other = [
        (i, c, _column(hints[c]))
        for i, c in enumerate(columns)
        if c != "mac" and not _is_plain(hints[c])
    ]
    live = _getter(operator.itemgetter, [i for i, _ in kept])
    mine = _getter(operator.attrgetter, [c for _, c in kept])

    def same(values: Sequence[Any], state: Any) -> bool:
        return live(values) == mine(state) and all(
            decode(values[i]) == getattr(state, name) for i, name, decode in other
        )

    return same


# --- folding one stream at a time ---------------------------------------------------------


def key_states(rows: Iterable[Sequence[Any]]) -> Iterator[tuple[str, KeyState]]:
    """Rows of EVENT_COLUMNS ordered by key_id, then position: each key's state, in key
    order, folded from its own events only (the one state held at a time)."""
    for key_id, group in itertools.groupby(rows, operator.itemgetter(KEY_ID)):
        state: KeyState | None = None
        for row in group:
            event = decode_event(row)
            if isinstance(event, ev.KeyEvent):
                state = apply_key(state, event)
        if state is not None:
            yield key_id, state


def identity_states(rows: Iterable[Sequence[Any]]) -> Iterator[tuple[str, IdentityState]]:
    """Rows ordered by identity, then position: each identity's state (key events included,
    as apply_identity wants them), in name order."""
    for name, group in itertools.groupby(rows, operator.itemgetter(IDENTITY)):
        state: IdentityState | None = None
        for row in group:
            event = decode_event(row)
            if getattr(event, "identity", None) is not None:
                state = apply_identity(state, event)
        if state is not None:
            yield name, state


def merge_join(
    rebuilt: Iterable[tuple[str, S]], live: Iterable[tuple[str, L]]
) -> Iterator[tuple[str, S | None, L | None]]:
    """Two streams in ascending name order, joined: each name once with what each side has
    for it. Holds one item of each side; a stream out of order is an error, not a wrong
    answer."""
    rebuilt_it, live_it = iter(rebuilt), iter(live)
    r, lv = next(rebuilt_it, None), next(live_it, None)
    last: str | None = None
    out: tuple[str, S | None, L | None]
    while r is not None or lv is not None:
        if lv is None or (r is not None and r[0] < lv[0]):
            assert r is not None
            name, out = r[0], (r[0], r[1], None)
            r = next(rebuilt_it, None)
        elif r is None or lv[0] < r[0]:
            name, out = lv[0], (lv[0], None, lv[1])
            lv = next(live_it, None)
        else:
            name, out = r[0], (r[0], r[1], lv[1])
            r, lv = next(rebuilt_it, None), next(live_it, None)
        if last is not None and not last < name:
            raise StoreError(f"rebuild: {name!r} came after {last!r}; the index order is broken")
        last = name
        yield out


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(items)
    while batch := list(itertools.islice(it, size)):
        yield batch
