"""A PostgreSQL connection (psycopg 3) as the store's shared code uses it (connection.Sql):
the `?` placeholders it writes become psycopg's, small results are read at once, big scans
go through server-side cursors a few thousand rows at a time, several reads share one
REPEATABLE READ snapshot. The connection is in autocommit: a transaction is only ever one
the store opens (BEGIN ... COMMIT), never one left open by a read. A connection the server
dropped is opened again by the next statement outside a transaction."""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from ....config.database import redact
from ....domain.errors import RotatorError, StoreError
from ..connection import Cursor, Params, Sql

Conn = psycopg.Connection[tuple[Any, ...]]

LOCK_TIMEOUT = "10s"  # as long as SQLite's busy timeout: a writer waits, then gives up
FETCH = 2000  # rows a server-side cursor sends at a time
PAGE = 2000  # rows per statement when the log is read page by page


def connect(url: str, readonly: bool = False, name: str = "rotator") -> Conn:
    """A connection in autocommit, waiting at most LOCK_TIMEOUT for a lock; `readonly`:
    the server refuses every write on it."""
    conn = psycopg.connect(url, autocommit=True, application_name=name)
    conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
    if readonly:
        conn.execute("SET default_transaction_read_only = on")
    return conn


@functools.lru_cache(maxsize=512)
def dialect(sql: str) -> str:
    """`?` -> `%s` outside string literals, and every `%` doubled (psycopg's own marker,
    as in LIKE '*@*.%')."""
    parts = sql.split("'")
    for i, part in enumerate(parts):
        part = part.replace("%", "%%")
        parts[i] = part.replace("?", "%s") if i % 2 == 0 else part
    return "'".join(parts)


class Scan:
    """A server-side cursor read FETCH rows at a time, closed once read to its end."""

    def __init__(
        self, cursor: psycopg.ServerCursor[Any], told: Callable[[], AbstractContextManager[None]]
    ) -> None:
        self.cursor, self.told = cursor, told
        self.description = cursor.description

    def __iter__(self) -> Iterator[Any]:
        try:
            with self.told():
                yield from self.cursor
        finally:
            self.close()

    def fetchone(self) -> Any:
        with self.told():
            return self.cursor.fetchone()

    def fetchall(self) -> list[Any]:
        try:
            with self.told():
                return self.cursor.fetchall()
        finally:
            self.close()

    def close(self) -> None:
        if not self.cursor.closed:
            with contextlib.suppress(psycopg.Error):
                self.cursor.close()


class PgSql:
    integrity_error: type[Exception] = psycopg.errors.UniqueViolation
    page: int | None = PAGE
    names_per_query = 50_000  # one array parameter, one statement shape

    def __init__(self, url: str, readonly: bool = False) -> None:
        self.url, self.readonly, self.where = url, readonly, redact(url)
        self.reader: Callable[[], Sql] = functools.partial(pg_reader, url)
        self.conn = connect(url, readonly)
        self.staged: set[str] = set()  # the staging tables made on this connection
        self._names = itertools.count()
        self._closed = False

    def live(self) -> Conn:
        """The connection, opened again if the server dropped it (outside a transaction:
        inside one, the transaction is lost and its own error says so)."""
        if self.conn.broken and not self._closed:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()
            self.conn = connect(self.url, self.readonly)
            self.staged = set()
        return self.conn

    def in_transaction(self) -> bool:
        return self.live().info.transaction_status != TransactionStatus.IDLE

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        with self.told():
            return self.live().execute(dialect(sql), list(params))

    def query(self, sql: str, params: Params = ()) -> Iterator[dict[str, Any]]:
        with self.told():
            cursor = self.live().cursor(row_factory=dict_row)
            return iter(cursor.execute(dialect(sql), list(params)))

    def stream(self, sql: str, params: Params = ()) -> Scan:
        # Inside a transaction the cursor reads as it goes; outside one it is declared WITH
        # HOLD (the server keeps the result until it is closed), so that nothing stays
        # open on this connection while the caller reads it at its own pace.
        with self.told():
            conn = self.live()
            hold = conn.info.transaction_status == TransactionStatus.IDLE
            cursor = conn.cursor(f"rotator_scan_{next(self._names)}", withhold=hold)
            cursor.itersize = FETCH
            cursor.execute(dialect(sql), list(params))
        return Scan(cursor, self.told)

    @contextlib.contextmanager
    def told(self) -> Iterator[None]:
        """The server gone, a lock waited for too long: rotator's StoreError, which every
        caller (a tick, a webhook courier, a scrape) handles as a failure to retry."""
        try:
            yield
        except psycopg.OperationalError as exc:
            raise StoreError(f"database {self.where}: {pg_hint(exc)}") from None

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        if self.in_transaction():
            yield
            return
        with self.told():
            self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            yield
        except BaseException:
            with contextlib.suppress(psycopg.Error):
                self.conn.execute("ROLLBACK")
            raise
        with self.told():
            self.conn.execute("COMMIT")

    def among(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} = ANY(?)", [list(values)]

    def data_version(self) -> int:
        return int(self.execute("SELECT n FROM data_version WHERE id = 1").fetchone()[0])

    def unindexed(self, column: str) -> str:
        return f"({column} || '')"

    def row_order(self, pk: str) -> str:
        return pk  # no rowid: the primary key orders the rows

    def key_parts(self, count: int, least: int) -> list[tuple[Any, Any]]:
        total = int(self.execute("SELECT COUNT(*) FROM keys").fetchone()[0])
        if total == 0 or total < least:
            return []
        fractions = [i / count for i in range(count + 1)]
        row = self.execute(
            "SELECT percentile_disc(?::float8[]) WITHIN GROUP (ORDER BY key_id) FROM keys",
            [fractions],
        ).fetchone()
        bounds = list(dict.fromkeys(row[0]))  # in order, each once
        if len(bounds) == 1:
            return [(bounds[0], bounds[0])]
        return list(itertools.pairwise(bounds))  # a bound shared by two parts: checked twice

    def close(self) -> None:
        self._closed = True
        self.conn.close()


def pg_reader(url: str) -> PgSql:
    """A read-only connection of its own (a worker process checking MACs)."""
    return PgSql(url, readonly=True)


def pg_hint(exc: psycopg.Error) -> str:
    """psycopg's message (its first line) plus what an operator can do about it."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, psycopg.errors.LockNotAvailable):
        return f"{text}: another process holds the database; try again"
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        return f"{text}: this connection was opened read-only"
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return (
            f"{text}: the database user lacks a privilege; rotator's user should own the "
            "database (CREATE DATABASE ... OWNER ...)"
        )
    if isinstance(exc, psycopg.errors.UndefinedTable):
        return f"{text}: not a rotator database yet; create it with `rotator init`"
    if isinstance(exc, psycopg.OperationalError):
        return (
            f"{text}: check that PostgreSQL runs and that the URL's host (or socket "
            "directory), port, database and user are right"
        )
    return text


def open_error(where: str, exc: psycopg.Error) -> RotatorError:
    return RotatorError(f"cannot open database {where}: {pg_hint(exc)}")
