"""What the status page's overview reads from the store: key counts by state and the
identities not removed (aggregates: no row is decoded or checked), the keys and
identities that hold a problem (partial indexes holding only those rows: SQLite's m010,
PostgreSQL's schema V2), and a search of the identities by name, domain or customer."""

from __future__ import annotations

from typing import Any

from ...domain.model import IdentityState, KeyState
from ...ports import OverviewCounts
from .connection import Sql


def key_order(sql: Sql) -> str:
    """The order of list_keys: the order the rows were stored settles ties (SQLite's
    rowid, as the index's own order; PostgreSQL's key_id)."""
    return f"domain, created_at, {sql.row_order('key_id')}"


class OverviewReads:
    sql: Sql

    def _key(self, row: dict[str, Any], check: bool = True) -> KeyState:
        raise NotImplementedError

    def _ident(self, row: dict[str, Any], check: bool = True) -> IdentityState:
        raise NotImplementedError

    def overview_counts(self) -> OverviewCounts:
        with self.sql.reading():  # one snapshot
            # through the state index alone
            keys = self.sql.execute("SELECT state, COUNT(*) FROM keys GROUP BY state").fetchall()
            live = self.sql.execute("SELECT COUNT(*) FROM identities WHERE retired_at IS NULL")
            identities = int(live.fetchone()[0])
        return OverviewCounts({str(s): int(n) for s, n in keys}, identities)

    def problem_keys(self) -> list[KeyState]:
        # the WHERE is the keys_problem index's own: the database walks that index
        rows = self.sql.query(
            "SELECT * FROM keys WHERE (last_error != '' OR drift != '') "
            f"ORDER BY {key_order(self.sql)}"
        )
        return [self._key(r) for r in rows]

    def problem_identities(self) -> list[IdentityState]:
        rows = self.sql.query(
            "SELECT * FROM identities WHERE (notice != '' OR dns_problem != '') ORDER BY identity"
        )
        return [self._ident(r) for r in rows]

    def search_identities(self, text: str, limit: int) -> tuple[list[IdentityState], int]:
        # A substring has no index: one pass over three columns, compared with Python's
        # lower() as the page always compared (either database's lower() folds ASCII only
        # in the "C" collation), the rows of the first `limit` matches read in full.
        names = [
            str(name)
            for name, domain, customer in self.sql.stream(
                "SELECT identity, domain, customer FROM identities ORDER BY identity"
            )
            if any(text in str(v or "").lower() for v in (name, domain, customer))
        ]
        found: list[IdentityState] = []
        for name in names[:limit]:
            rows = self.sql.query("SELECT * FROM identities WHERE identity = ?", [name])
            found.extend(self._ident(r) for r in rows)
        return found, len(names)
