"""Event store on PostgreSQL: the same log, chain, MACs, projections and audit as on SQLite
(the code is shared: append.py, queries.py, audit.py), on one connection per store object.

Writers run one at a time: each write transaction (READ COMMITTED) first takes the writers'
advisory lock (then, for leader work, checks its lease: leadership.check_fence), then
reads the log's head, so that positions and the hash chain are one total order and a
stream version checked is still that version when the transaction commits; UNIQUE
(stream_id, version) is the guard behind it (ConcurrencyError either way). A rebuild's
comparison reads one REPEATABLE READ snapshot. An event's row goes to the server by COPY
as soon as it is hashed and sealed, while the rest of the batch is folded; the projection
rows a batch changed are copied into a staging table and upserted from it in one
statement per table."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import psycopg
import structlog

from ....config.database import redact
from ....domain import events as ev
from ....domain.errors import FencedOut, RotatorError, StoreError
from ..anchor import Anchor
from ..append import Feed, Row, StoreWrites
from ..audit import SEALED_SQL, StoreAudit
from ..insert import upsert
from ..log_reads import LogReads
from ..overview import OverviewReads
from ..queries import StoreReads
from ..rows import Appended
from ..seal import Sealer
from . import schema
from .connection import PgSql, connect, open_error, pg_hint
from .leadership import check_fence
from .locks import WRITERS, xact_lock

log = structlog.get_logger("rotator")
ANALYZE_FROM = 1000  # events in one batch: below this, plans hardly move


class PostgresEventStore(StoreWrites, StoreReads, LogReads, OverviewReads, StoreAudit):
    sql: PgSql

    def __init__(
        self,
        url: str,
        readonly: bool = False,
        sealer: Sealer | None = None,
        anchor: Anchor | None = None,
    ) -> None:
        """As SqliteEventStore: `readonly` writes nothing at all (the server refuses it),
        `sealer` MACs what is written and checks what is read, `anchor` gets the head."""
        self.url, self.readonly, self.sealer, self.anchor = url, readonly, sealer, anchor
        self.sql = PgSql(url, readonly)
        self.where = self.sql.where
        self._analyzed = False
        try:
            if readonly:
                if schema.pending(self.sql.conn):
                    raise RotatorError(
                        f"database {self.where} is not at this rotator's schema version; run "
                        "a writing command (e.g. `rotator init`) as its owner to create or "
                        "upgrade it"
                    )
                return
            upgraded = schema.apply(self.sql.conn, self.where)
            self._seal_at_open(upgraded)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.sql.close()

    def append(self, events: Sequence[ev.Event], expected: dict[str, int]) -> Appended:
        appended = super().append(events, expected)
        if len(appended) >= ANALYZE_FROM and not self._analyzed:
            self._analyzed = True  # asked once per connection
            if self._never_analyzed():
                self.analyze()
        return appended

    def rebuild(self, check_only: bool = False) -> list[str]:
        diffs = super().rebuild(check_only)
        if not check_only:
            self.analyze()
        return diffs

    def _never_analyzed(self) -> bool:
        row = self.sql.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_user_tables WHERE relname IN "
            "('events', 'keys', 'identities') AND schemaname = current_schema() "
            "AND last_analyze IS NULL AND last_autoanalyze IS NULL)"
        ).fetchone()
        return bool(row[0])

    def analyze(self) -> None:
        """Planner statistics for tables that have none yet, after the first big batch
        (a fill, an import), and after a rebuild or a migration: the server's autovacuum
        would gather them within its naptime, and until then a due query planned without
        any (a default guess of a third of the rows) can walk a whole table; once there
        are some, the planner scales them by the tables' sizes and autovacuum keeps them
        fresh. A failure costs only the plans."""
        try:
            with self.sql.told():
                self.sql.live().execute("ANALYZE events, keys, identities")
        except StoreError as exc:
            log.warning("analyze_failed", database=self.where, error=str(exc))

    @contextlib.contextmanager
    def _write(self, lock: bool = True) -> Iterator[None]:
        # The server's own errors (connection lost, lock wait too long, a privilege
        # missing) become one StoreError naming the database, as SQLite's do.
        if self.readonly and lock:
            raise StoreError(f"database {self.where} was opened read-only")
        sql = self.sql
        try:
            if sql.in_transaction():
                raise StoreError(f"database {self.where}: a transaction is open already")
            if lock:
                sql.conn.execute("BEGIN")
                xact_lock(sql.conn, WRITERS)
                if self.fenced_by is not None:  # leader work: the lease, held till commit
                    check_fence(sql.conn, self.fenced_by)
            else:
                sql.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        except psycopg.Error as exc:
            self._abort()
            raise StoreError(f"database {self.where}: {pg_hint(exc)}") from None
        except FencedOut:
            self._abort()
            raise
        try:
            yield
        except BaseException as exc:
            self._abort()
            if isinstance(exc, psycopg.Error):
                raise StoreError(f"database {self.where}: {pg_hint(exc)}") from None
            raise
        try:
            sql.conn.execute("COMMIT")
        except psycopg.Error as exc:
            self._abort()
            raise StoreError(f"database {self.where}: {pg_hint(exc)}") from None

    def _abort(self) -> None:
        with contextlib.suppress(psycopg.Error):
            if self.sql.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                self.sql.conn.execute("ROLLBACK")

    def _feed(self, table: str, columns: tuple[str, ...], total: int, pk: str | None) -> Feed:
        if pk is None:
            return CopyFeed(self.sql, table, columns)
        return StagedUpsert(self.sql, table, columns, pk)


class CopyFeed:
    """Rows COPYed as they come: the server stores each while the next is computed. The
    connection runs nothing else until finish() or abandon()."""

    def __init__(self, sql: PgSql, table: str, columns: tuple[str, ...]) -> None:
        self.cursor = sql.live().cursor()
        self.copying = self.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN")
        self.copy = self.copying.__enter__()

    def put(self, row: Row) -> None:
        self.copy.write_row(row)

    def finish(self) -> None:
        self.copying.__exit__(None, None, None)  # the server's error, if any, raises here

    def abandon(self) -> None:
        failed = _Abandoned("the batch failed before its events were all written")
        with contextlib.suppress(Exception):
            self.copying.__exit__(_Abandoned, failed, None)


class _Abandoned(Exception):
    pass


class StagedUpsert:
    """Projection rows upserted in one statement: COPYed into a temporary table first (its
    rows go at commit), then inserted from it, a row whose key exists updated in place."""

    def __init__(self, sql: PgSql, table: str, columns: tuple[str, ...], pk: str) -> None:
        self.sql, self.table, self.columns, self.pk = sql, table, columns, pk
        self.rows: list[Row] = []

    def put(self, row: Row) -> None:
        self.rows.append(row)

    def finish(self) -> None:
        rows, self.rows = self.rows, []
        if not rows:
            return
        conn, stage, names = self.sql.live(), f"staged_{self.table}", ", ".join(self.columns)
        if stage not in self.sql.staged:
            conn.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} "
                f"(LIKE {self.table}) ON COMMIT DELETE ROWS"
            )
            self.sql.staged.add(stage)
        cursor = conn.cursor()
        with cursor.copy(f"COPY {stage} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(
            f"INSERT INTO {self.table} ({names}) SELECT {names} FROM {stage}"
            + upsert(self.pk, self.columns)
        )
        cursor.execute(f"DELETE FROM {stage}")  # the next batch of this transaction

    def abandon(self) -> None:
        self.rows = []


def open_postgres(
    url: str, readonly: bool = False, sealer: Sealer | None = None, anchor: Anchor | None = None
) -> PostgresEventStore:
    try:
        return PostgresEventStore(url, readonly=readonly, sealer=sealer, anchor=anchor)
    except psycopg.Error as exc:
        raise open_error(redact(url), exc) from None


def has_sealed_events(url: str) -> bool:
    """Whether the log already depends on an audit key. A server that cannot be reached
    is an error, not "nothing sealed": a missing key is never made for a log that may
    have been sealed."""
    try:
        with connect(url, readonly=True) as conn:
            if schema.version(conn) == 0:
                return False
            row = conn.execute(SEALED_SQL).fetchone()
    except psycopg.Error as exc:
        raise open_error(redact(url), exc) from None
    return row is not None
