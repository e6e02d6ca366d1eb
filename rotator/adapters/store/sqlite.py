"""Event store on SQLite (sqlite-utils): an append-only, hash-chained event log plus the
key and identity projections, updated in the same transaction as the append.

- events: global position, (stream_id, version) UNIQUE for optimistic concurrency,
  UTC timestamp, type, query columns, JSON payload, actor, reason, prev_hash, hash.
- UPDATE/DELETE on events is refused by triggers (append-only).
- WAL mode, busy timeout, secure_delete; BEGIN IMMEDIATE for writers so that a concurrent
  writer waits instead of failing on a lock upgrade.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlite_utils

from ...domain.errors import RotatorError, StoreError
from .anchor import Anchor
from .append import Feed, StoreWrites
from .audit import SEALED_SQL, StoreAudit
from .connection import Params, Sql
from .errors import db_hint
from .insert import Inserter, upsert
from .log_reads import LogReads
from .overview import OverviewReads
from .queries import StoreReads
from .rows import GENESIS, Appended, event_hash
from .schema import changes_rows, migrations
from .seal import Sealer

__all__ = ["GENESIS", "Appended", "SqliteEventStore", "db_hint", "event_hash", "open_store"]

BUSY_TIMEOUT_MS = 10_000


class SqliteEventStore(StoreWrites, StoreReads, LogReads, OverviewReads, StoreAudit):
    def __init__(
        self,
        path: Path | str,
        readonly: bool = False,
        sealer: Sealer | None = None,
        anchor: Anchor | None = None,
    ) -> None:
        """`readonly`: open with SQLite's mode=ro and write nothing at all (no directory,
        no WAL switch, no migration), for the commands that only read. `sealer` (the audit
        key) MACs what is written and checks every projection row read; `anchor` gets the
        log's head after every transaction (store_seal.py)."""
        self.path = Path(path)
        self.readonly = readonly
        self.sealer = sealer
        self.anchor = anchor
        if readonly:
            if not self.path.is_file():
                raise RotatorError(
                    f"database {self.path} does not exist; create it with `rotator init`"
                )
            conn = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro",
                uri=True,
                timeout=BUSY_TIMEOUT_MS / 1000,
                check_same_thread=False,
            )
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
            )
        self.db = sqlite_utils.Database(conn)
        self.sql = SqliteSql(self.db, self.path)
        self._inserter = Inserter(conn)
        self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if readonly:
            if migrations.pending(self.db):
                raise RotatorError(
                    f"database {self.path} is not at this rotator's schema version; run a "
                    "writing command (e.g. `rotator init`) as its owner to upgrade it"
                )
            return
        self.db.execute("PRAGMA secure_delete = ON")
        self.db.execute("PRAGMA foreign_keys = ON")
        if self.db.journal_mode != "wal":
            self.db.enable_wal()
        self.db.execute("PRAGMA synchronous = FULL")
        upgraded = changes_rows(self.db) and self.db["events"].exists()
        migrations.apply(self.db)
        try:
            self._seal_at_open(upgraded)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._inserter.close()
        self.db.close()

    @contextlib.contextmanager
    def _write(self, lock: bool = True) -> Iterator[None]:
        # IMMEDIATE takes the write lock up front: the fold below reads projections that
        # must not change before we commit. Without `lock`, one consistent read snapshot.
        # SQLite's own errors (read-only file, disk full, locked too long) become one
        # StoreError naming the file, so that callers handle them like any other failure.
        if self.readonly and lock:
            raise StoreError(f"database {self.path} was opened read-only")
        try:
            self.db.conn.execute("BEGIN IMMEDIATE" if lock else "BEGIN DEFERRED")
        except sqlite3.Error as exc:
            raise StoreError(f"database {self.path}: {db_hint(exc, self.path)}") from None
        try:
            yield
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                self.db.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"database {self.path}: {db_hint(exc, self.path)}") from None
            raise
        try:
            self.db.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self.db.conn.execute("ROLLBACK")
            raise StoreError(f"database {self.path}: {db_hint(exc, self.path)}") from None

    def _feed(self, table: str, columns: tuple[str, ...], total: int, pk: str | None) -> Feed:
        tail = upsert(pk, columns) if pk is not None else ""
        return self._inserter.feed(f"INSERT INTO {table}", columns, total, tail)


class SqliteSql:
    """An SQLite connection as the shared store code uses it (connection.Sql)."""

    integrity_error: type[Exception] = sqlite3.IntegrityError
    page: int | None = None  # a cursor streams the log, holding nothing a writer waits for
    names_per_query = 500  # bound parameters, well under SQLite's limit

    def __init__(self, db: sqlite_utils.Database, path: Path) -> None:
        self.db, self.conn, self.where = db, db.conn, str(path)
        self.reader: Callable[[], Sql] = functools.partial(sqlite_reader, str(path))

    def execute(self, sql: str, params: Params = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def query(self, sql: str, params: Params = ()) -> Iterator[dict[str, Any]]:
        # sqlite-utils' query() without its per-statement parsing: projection reads are
        # most of a tick's statements. A join naming a column twice goes through it (it
        # tells the two apart).
        cursor = self.conn.execute(sql, params)
        names = [d[0] for d in cursor.description or ()]
        if len(set(names)) < len(names):
            yield from self.db.query(sql, params)
            return
        for row in cursor:
            yield dict(zip(names, row, strict=True))

    def stream(self, sql: str, params: Params = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)  # SQLite steps it row by row as it is read

    def among(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} IN ({','.join('?' * len(values))})", list(values)

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN DEFERRED")
        try:
            yield
        finally:
            self.conn.execute("COMMIT")  # a read: nothing to keep or undo

    def data_version(self) -> int:
        """Changes whenever another connection commits (PRAGMA data_version)."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def unindexed(self, column: str) -> str:
        return f"+{column}"

    def row_order(self, pk: str) -> str:
        return "rowid"

    def key_parts(self, count: int, least: int) -> list[tuple[Any, Any]]:
        low, high = self.conn.execute("SELECT MIN(rowid), MAX(rowid) FROM keys").fetchone()
        if low is None or high - low < least:
            return []
        step = max(1, (high - low + count) // count)
        return [(a, min(a + step - 1, high)) for a in range(low, high + 1, step)]

    def close(self) -> None:
        self.conn.close()


def sqlite_reader(path: str) -> SqliteSql:
    """A read-only connection of its own (a worker process checking MACs)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    return SqliteSql(sqlite_utils.Database(conn), Path(path))


def open_store(
    path: Path | str,
    readonly: bool = False,
    sealer: Sealer | None = None,
    anchor: Anchor | None = None,
) -> SqliteEventStore:
    try:
        return SqliteEventStore(path, readonly=readonly, sealer=sealer, anchor=anchor)
    except sqlite3.Error as exc:
        raise RotatorError(f"cannot open database {path}: {db_hint(exc, Path(path))}") from None
    except OSError as exc:
        raise RotatorError(
            f"cannot open database {path}: {exc.strerror}; check that this user owns "
            f"{Path(path).parent}"
        ) from None


def has_sealed_events(path: Path) -> bool:
    """Whether the log at `path` already depends on an audit key (read without opening
    the store: the key decides how it is opened)."""
    if not path.is_file():
        return False
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        row = conn.execute(SEALED_SQL).fetchone()
    except sqlite3.Error:  # no events table yet, or no mac column: nothing sealed
        return False
    finally:
        conn.close()
    return row is not None
