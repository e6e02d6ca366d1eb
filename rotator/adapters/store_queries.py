"""The event store's reads: projections by key, identity and due time, and the log with
its filters (every one served by an index)."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from ..domain.model import IdentityState, KeyState
from ..domain.states import State
from ..ports import LogFilter, StoredEvent
from ..timeutil import iso, parse_iso
from .store_rows import event_from_row
from .store_seal import Sealer


class StoreReads:
    db: sqlite_utils.Database
    path: Path
    sealer: Sealer | None

    def _key(self, row: dict[str, Any], check: bool = True) -> KeyState:
        raise NotImplementedError

    def _ident(self, row: dict[str, Any], check: bool = True) -> IdentityState:
        raise NotImplementedError

    def stream_version(self, stream_id: str) -> int:
        row = self.db.execute(
            "SELECT MAX(version) FROM events WHERE stream_id = ?", [stream_id]
        ).fetchone()
        return int(row[0] or 0)

    def key(self, key_id: str) -> KeyState | None:
        rows = list(self.db.query("SELECT * FROM keys WHERE key_id = ?", [key_id]))
        return self._key(rows[0]) if rows else None

    def list_keys(self, identity: str | None = None, state: State | None = None) -> list[KeyState]:
        where, params = [], []
        if identity is not None:
            where.append("identity = ?")
            params.append(identity)
        if state is not None:
            where.append("state = ?")
            params.append(state.value)
        sql = "SELECT * FROM keys"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self.db.query(sql + " ORDER BY domain, created_at", params)
        return [self._key(r) for r in rows]

    def due_keys(self, now: datetime, limit: int = 1000) -> list[KeyState]:
        rows = self.db.query(
            "SELECT * FROM keys WHERE next_action_at IS NOT NULL AND next_action_at <= ? "
            "ORDER BY next_action_at LIMIT ?",
            [iso(now), limit],
        )
        return [self._key(r) for r in rows]

    def next_due(self, skip: Collection[str] = ()) -> datetime | None:
        """Earliest pending action time over keys and identities (for the scheduler),
        ignoring the keys in `skip` (the caller already knows when to look at them)."""
        idents = self.db.execute(
            "SELECT MIN(rotation_due_at) FROM identities WHERE rotation_due_at IS NOT NULL"
        ).fetchone()[0]
        # walk the partial index from the earliest; at most len(skip) rows are passed over
        rows = self.db.execute(
            "SELECT key_id, next_action_at FROM keys WHERE next_action_at IS NOT NULL "
            "ORDER BY next_action_at LIMIT ?",
            [len(skip) + 1],
        )
        keys = next((at for key_id, at in rows if key_id not in skip), None)
        times = [t for t in (idents, keys) if t]
        return parse_iso(min(times)) if times else None

    def identity(self, identity: str) -> IdentityState | None:
        rows = list(self.db.query("SELECT * FROM identities WHERE identity = ?", [identity]))
        return self._ident(rows[0]) if rows else None

    def identity_sending(self, domain: str) -> IdentityState | None:
        """The identity that signs `domain`'s mail, if any."""
        rows = list(
            self.db.query(
                "SELECT * FROM identities WHERE sending_domain = ? ORDER BY identity LIMIT 1",
                [domain],
            )
        )
        return self._ident(rows[0]) if rows else None

    def identities(self) -> list[IdentityState]:
        return [self._ident(r) for r in self.db.query("SELECT * FROM identities ORDER BY identity")]

    def due_identities(self, now: datetime, limit: int = 1000) -> list[IdentityState]:
        rows = self.db.query(
            "SELECT * FROM identities WHERE rotation_due_at IS NOT NULL "
            "AND rotation_due_at <= ? ORDER BY rotation_due_at LIMIT ?",
            [iso(now), limit],
        )
        return [self._ident(r) for r in rows]

    def selectors(self, domain: str) -> set[str]:
        return {
            r["selector"]
            for r in self.db.query("SELECT selector FROM keys WHERE domain = ?", [domain])
        }

    def events(self, flt: LogFilter | None = None) -> Iterator[StoredEvent]:
        flt = flt or LogFilter()
        where = ["position > :after"]
        params: dict[str, Any] = {"after": flt.after_position}
        for col in ("identity", "domain", "selector", "key_id", "actor"):
            value = getattr(flt, col)
            if value is not None:
                where.append(f"{col} = :{col}")
                params[col] = value
        if flt.identities:
            names = []
            for i, ident in enumerate(flt.identities):
                params[f"i{i}"] = ident
                names.append(f":i{i}")
            where.append(f"identity IN ({', '.join(names)})")
        if flt.types:
            names = []
            for i, t in enumerate(flt.types):
                params[f"t{i}"] = t
                names.append(f":t{i}")
            where.append(f"type IN ({', '.join(names)})")
        if flt.since is not None:
            where.append("at >= :since")
            params["since"] = iso(flt.since)
        if flt.until is not None:
            where.append("at <= :until")
            params["until"] = iso(flt.until)
        sql = f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY position"
        if flt.limit is not None:
            sql += f" LIMIT {int(flt.limit)}"
        for row in self.db.query(sql, params):
            yield event_from_row(row)

    def info(self) -> dict[str, Any]:
        count = self.db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        return {"path": str(self.path), "events": count}
