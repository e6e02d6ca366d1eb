"""Putting rows into SQLite fast: many rows per INSERT statement (one statement step for
thousands of rows rather than executemany's step per row), and for a big batch, on a
helper thread while the caller computes the next rows. SQLite releases the GIL while it
steps a statement, so a batch's inserts (about a third of its time) run on a second core
beside its hashing, MACs and folds."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

Row = tuple[Any, ...]

ROWS_PER_STATEMENT = 500
# below this many rows a batch is inserted on the caller's thread: a tick's few events
# gain nothing from a hand-over
OVERLAP_FROM = 2 * ROWS_PER_STATEMENT


class Inserter:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._pool: ThreadPoolExecutor | None = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def rows_per_statement(self, columns: tuple[str, ...]) -> int:
        limit = self.conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        return max(1, min(ROWS_PER_STATEMENT, limit // len(columns)))

    def insert(self, into: str, columns: tuple[str, ...], rows: list[Row], tail: str = "") -> None:
        """`into` ("INSERT INTO table"), the columns, the rows; `tail` e.g. an upsert."""
        # Two statement shapes per table only, full chunks and single rows: SQLite keeps
        # every prepared statement in the connection's cache (about 1.4 MB per 1,000 rows
        # of 15 columns), and one shape per batch size would hold hundreds of MB.
        per = self.rows_per_statement(columns)
        full = len(rows) - len(rows) % per
        for i in range(0, full, per):
            self.conn.execute(
                values_sql(into, columns, per, tail), [v for r in rows[i : i + per] for v in r]
            )
        if full < len(rows):
            self.conn.executemany(values_sql(into, columns, 1, tail), rows[full:])

    def feed(self, into: str, columns: tuple[str, ...], total: int, tail: str = "") -> Feed:
        """A Feed for `total` rows to come: on the helper thread if there are enough."""

        def insert(rows: list[Row]) -> None:
            self.insert(into, columns, rows, tail)

        if total < OVERLAP_FROM:
            return Feed(insert, None, total)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="rotator-insert")
        return Feed(insert, self._pool, total)


class Feed:
    """Rows handed over as they are computed, inserted in statement-sized chunks. Between
    the first put() and finish() only the helper thread touches the connection; finish()
    waits for every insert and raises the first one's error; abandon() waits for them too,
    after the caller failed: it must not roll back while an insert runs."""

    def __init__(
        self, insert: Callable[[list[Row]], None], pool: ThreadPoolExecutor | None, total: int
    ) -> None:
        self._insert, self._pool = insert, pool
        self._size = ROWS_PER_STATEMENT if pool is not None else max(total, 1)
        self._rows: list[Row] = []
        self._pending: list[Future[None]] = []

    def put(self, row: Row) -> None:
        self._rows.append(row)
        if len(self._rows) >= self._size:
            self._hand_over()

    def finish(self) -> None:
        """Insert what is left and wait for every insert; the first error is raised."""
        try:
            self._hand_over()
        except BaseException:
            self.abandon()
            raise
        pending, self._pending = self._pending, []
        for f in pending:  # in order; abandon the rest if one failed
            try:
                f.result()
            except BaseException:
                self._pending = pending[pending.index(f) + 1 :]
                self.abandon()
                raise

    def abandon(self) -> None:
        """The caller failed: insert nothing more, wait for the inserts under way."""
        self._rows = []
        pending, self._pending = self._pending, []
        for f in pending:
            f.exception()  # waits; the caller's own error is the one that counts

    def _hand_over(self) -> None:
        rows, self._rows = self._rows, []
        if not rows:
            return
        if self._pool is None:
            self._insert(rows)
            return
        # at most one chunk waits behind the one being inserted: memory stays bounded and
        # a failure is seen early
        while len(self._pending) > 1:
            self._pending.pop(0).result()
        self._pending.append(self._pool.submit(self._insert, rows))


@functools.lru_cache(maxsize=16)
def values_sql(into: str, columns: tuple[str, ...], rows: int, tail: str) -> str:
    one = "(" + ", ".join("?" * len(columns)) + ")"
    return f"{into} ({', '.join(columns)}) VALUES {', '.join([one] * rows)}{tail}"


@functools.cache
def upsert(pk: str, columns: tuple[str, ...]) -> str:
    """The tail that makes an INSERT update the row whose `pk` exists already."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != pk)
    return f" ON CONFLICT ({pk}) DO UPDATE SET {updates}"
