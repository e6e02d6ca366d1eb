"""What the status page's overview reads from the store: key counts by state and the
identities not removed (aggregates: no row is decoded or checked), the keys and
identities that hold a problem (partial indexes holding only those rows, m010), and a
search of the identities by name, domain or customer."""

from __future__ import annotations

from typing import Any

import sqlite_utils

from ...domain.model import IdentityState, KeyState
from ...ports import OverviewCounts

# the order of list_keys; rowid (insertion order) settles ties, as the index's own order
KEY_ORDER = "domain, created_at, rowid"


def _lower(value: object) -> str:
    return str(value or "").lower()


class OverviewReads:
    db: sqlite_utils.Database

    def _key(self, row: dict[str, Any], check: bool = True) -> KeyState:
        raise NotImplementedError

    def _ident(self, row: dict[str, Any], check: bool = True) -> IdentityState:
        raise NotImplementedError

    def overview_counts(self) -> OverviewCounts:
        conn = self.db.conn
        own = not conn.in_transaction  # one snapshot, unless a caller's transaction is one
        if own:
            conn.execute("BEGIN DEFERRED")
        try:
            # through the state index alone
            keys = dict(conn.execute("SELECT state, COUNT(*) FROM keys GROUP BY state"))
            live = conn.execute("SELECT COUNT(*) FROM identities WHERE retired_at IS NULL")
            identities = int(live.fetchone()[0])
        finally:
            if own:
                conn.execute("COMMIT")  # a read: nothing to keep or undo
        return OverviewCounts({str(s): int(n) for s, n in keys.items()}, identities)

    def problem_keys(self) -> list[KeyState]:
        # the WHERE is the keys_problem index's own: SQLite walks that index, in its order
        rows = self.db.query(
            f"SELECT * FROM keys WHERE (last_error != '' OR drift != '') ORDER BY {KEY_ORDER}"
        )
        return [self._key(r) for r in rows]

    def problem_identities(self) -> list[IdentityState]:
        rows = self.db.query(
            "SELECT * FROM identities WHERE (notice != '' OR dns_problem != '') ORDER BY identity"
        )
        return [self._ident(r) for r in rows]

    def search_identities(self, text: str, limit: int) -> tuple[list[IdentityState], int]:
        # A substring has no index: one pass over three columns, the rows of the first
        # `limit` matches read in full. Python's lower(), as the page always compared
        # (SQLite's lower() folds ASCII only).
        self.db.conn.create_function("rotator_lower", 1, _lower, deterministic=True)
        names = [
            str(name)
            for (name,) in self.db.execute(
                "SELECT identity FROM identities WHERE instr(rotator_lower(identity), :q) "
                "OR instr(rotator_lower(domain), :q) OR instr(rotator_lower(customer), :q) "
                "ORDER BY identity",
                {"q": text},
            )
        ]
        found: list[IdentityState] = []
        for name in names[:limit]:
            rows = list(self.db.query("SELECT * FROM identities WHERE identity = ?", [name]))
            found.extend(self._ident(r) for r in rows)
        return found, len(names)
