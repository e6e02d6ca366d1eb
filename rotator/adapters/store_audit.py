"""Checking the log against itself: the hash chain, and the projections replayed from
scratch compared with the live ones."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from ..domain import events as ev
from ..domain.model import IdentityState, KeyState, apply_identity, apply_key
from ..ports import StoredEvent
from .store_rows import GENESIS, event_hash


def verify_chain(rows: Iterable[dict[str, Any]]) -> tuple[int, str | None]:
    """Recompute the hash chain over event rows in position order. Returns (events
    checked, first problem or None)."""
    prev = GENESIS
    n = 0
    expected_pos = 1
    for row in rows:
        n += 1
        pos = row["position"]
        if pos != expected_pos:
            return n, f"event at position {expected_pos} is missing (next is {pos})"
        if row["prev_hash"] != prev:
            return n, f"event {pos}: prev_hash does not link to event {pos - 1}"
        body = {k: v for k, v in row.items() if k != "position"}
        if event_hash(body) != row["hash"]:
            return n, f"event {pos}: content does not match its hash (edited)"
        prev = row["hash"]
        expected_pos += 1
    return n, None


def replay(
    events: Iterable[StoredEvent],
) -> tuple[dict[str, KeyState], dict[str, IdentityState]]:
    """Fold every event from scratch (in memory)."""
    keys: dict[str, KeyState | None] = {}
    idents: dict[str, IdentityState | None] = {}
    for stored in events:
        event = stored.event
        if isinstance(event, ev.KeyEvent):
            keys[event.key_id] = apply_key(keys.get(event.key_id), event)
        name = getattr(event, "identity", None)
        if name is not None:
            idents[name] = apply_identity(idents.get(name), event)
    return (
        {k: v for k, v in keys.items() if v is not None},
        {k: v for k, v in idents.items() if v is not None},
    )


def diff(kind: str, live: dict[str, Any], rebuilt: dict[str, Any]) -> list[str]:
    """One line per difference between a live projection and a replayed one."""
    out: list[str] = []
    for ident in sorted(set(live) | set(rebuilt)):
        a, b = live.get(ident), rebuilt.get(ident)
        if a is None or b is None:
            where = "missing from the live projection" if a is None else "not in the log"
            out.append(f"{kind} {ident}: {where}")
            continue
        for f in dataclasses.fields(a):
            if getattr(a, f.name) != getattr(b, f.name):
                out.append(
                    f"{kind} {ident}: {f.name} live={getattr(a, f.name)!r} "
                    f"rebuilt={getattr(b, f.name)!r}"
                )
    return out
