"""The event store's reads of the log itself: a stream's version, the log by filter (every
one served by an index), and whether anything of a kind was recorded since a position."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from ...domain import signing as signing_events
from ...ports import LogFilter, StoredEvent
from ...timeutil import iso
from .connection import Sql
from .rows import event_from_row

# the names the domain defines (signing_changed_since, signing_set_changed_since ask for them)
SIGNING_EVENTS = signing_events.SIGNING_EVENTS
SET_EVENTS = signing_events.SIGNING_SET_EVENTS


class LogReads:
    sql: Sql

    def stream_version(self, stream_id: str) -> int:
        row = self.sql.execute(
            "SELECT MAX(version) FROM events WHERE stream_id = ?", [stream_id]
        ).fetchone()
        return int(row[0] or 0)

    def events(self, flt: LogFilter | None = None) -> Iterator[StoredEvent]:
        flt = flt or LogFilter()
        where, params = ["position > ?"], []
        for col in ("identity", "domain", "selector", "key_id", "actor"):
            value = getattr(flt, col)
            if value is not None:
                where.append(f"{col} = ?")
                params.append(value)
        for col, values in (("identity", flt.identities), ("type", flt.types)):
            if values:
                where.append(f"{col} IN ({', '.join('?' * len(values))})")
                params += values
        if flt.since is not None:
            where.append("at >= ?")
            params.append(iso(flt.since))
        if flt.until is not None:
            where.append("at <= ?")
            params.append(iso(flt.until))
        select = f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY position"
        # one statement, or page after page from the last position read (the log only
        # grows at its end: a page never misses an event the one before could see)
        after, left, page = flt.after_position, flt.limit, self.sql.page
        while left is None or left > 0:
            take = left if page is None else page if left is None else min(page, left)
            got = 0
            sql = select if take is None else f"{select} LIMIT {int(take)}"
            for row in self.sql.query(sql, [after, *params]):
                got, after = got + 1, row["position"]
                yield event_from_row(row)
            if take is None or got < take:
                return
            if left is not None:
                left -= got

    def info(self) -> dict[str, Any]:
        count = self.sql.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        return {"path": self.sql.where, "events": count}

    def data_version(self) -> int:
        """Changes whenever a write to the projection commits."""
        return self.sql.data_version()

    def signing_changed_since(self, position: int) -> bool:
        return self._recorded_since(position, SIGNING_EVENTS)

    def signing_set_changed_since(self, position: int) -> bool:
        return self._recorded_since(position, SET_EVENTS)

    def _recorded_since(self, position: int, types: Sequence[str]) -> bool:
        # walk the log after `position` by position (not through the type index, which
        # would visit every such event ever recorded)
        marks = ",".join("?" * len(types))
        kind = self.sql.unindexed("type")
        row = self.sql.execute(
            f"SELECT 1 FROM events WHERE position > ? AND {kind} IN ({marks}) "
            "ORDER BY position LIMIT 1",
            [position, *types],
        ).fetchone()
        return row is not None
