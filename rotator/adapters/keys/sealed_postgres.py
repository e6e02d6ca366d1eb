"""Sealed keys in PostgreSQL (psycopg 3): the table `sealed_keys`, made if missing, in the
database every node reaches. One autocommit connection per instance, opened when first used
and opened again after it broke (a restart or a failover of the server); with synchronous
commit (PostgreSQL's default) a put is durable when it returns. What a deleted row leaves
behind (its old tuple until VACUUM, WAL, backups) is in docs/keys-in-database.md."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

from ...config.keys import redact
from ...domain.errors import ExternalError

T = TypeVar("T")
Conn = psycopg.Connection[tuple[Any, ...]]

SCHEMA = """CREATE TABLE IF NOT EXISTS sealed_keys (
    key_id text PRIMARY KEY,
    blob bytea NOT NULL,
    sealed_at timestamptz NOT NULL DEFAULT now()
)"""
# pg_advisory_xact_lock's key: two first connections never race to create the table
SCHEMA_LOCK = 0x726F7461_6B657973  # "rotakeys"


class PostgresSealedKeys:
    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self._conn: Conn | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PostgresSealedKeys({redact(self.conninfo)})"

    def __reduce__(self) -> tuple[Callable[[str], PostgresSealedKeys], tuple[str]]:
        # a worker process gets one instance (and connection) however many tasks name it
        return shared, (self.conninfo,)

    def _connect(self) -> Conn:
        if self._conn is not None and self._conn.broken:
            self._conn.close()
            self._conn = None
        if self._conn is None:
            conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10)
            try:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                    conn.execute(SCHEMA)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _run(self, op: Callable[[Conn], T]) -> T:
        with self._lock:
            for attempt in (1, 2):
                reused = self._conn is not None
                try:
                    return op(self._connect())
                except psycopg.OperationalError as exc:
                    # a connection that went stale while idle (the server restarted, or
                    # failed over) is opened again once: every operation here is idempotent
                    if attempt == 1 and reused and self._conn is not None and self._conn.broken:
                        continue
                    raise self._failed(exc) from None
                except psycopg.Error as exc:
                    raise self._failed(exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _failed(self, exc: psycopg.Error) -> ExternalError:
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        return ExternalError(f"key database {redact(self.conninfo)}: {first}")

    def put(self, key_id: str, blob: bytes) -> None:
        self._run(
            lambda db: db.execute(
                "INSERT INTO sealed_keys (key_id, blob) VALUES (%s, %s) "
                "ON CONFLICT (key_id) DO UPDATE SET blob = EXCLUDED.blob, sealed_at = now()",
                (key_id, blob),
            )
        )

    def get(self, key_id: str) -> bytes | None:
        row = self._run(
            lambda db: db.execute(
                "SELECT blob FROM sealed_keys WHERE key_id = %s", (key_id,)
            ).fetchone()
        )
        return None if row is None else bytes(row[0])

    def replace(self, key_id: str, old: bytes, new: bytes) -> bool:
        cur = self._run(
            lambda db: db.execute(
                "UPDATE sealed_keys SET blob = %s, sealed_at = now() "
                "WHERE key_id = %s AND blob = %s",
                (new, key_id, old),
            )
        )
        return cur.rowcount == 1

    def delete(self, key_id: str) -> bool:
        cur = self._run(
            lambda db: db.execute("DELETE FROM sealed_keys WHERE key_id = %s", (key_id,))
        )
        return cur.rowcount == 1

    def ids(self) -> list[str]:
        # "C" order: the same as SQLite's and Python's for the ASCII ids keys have
        rows = self._run(
            lambda db: db.execute(
                'SELECT key_id FROM sealed_keys ORDER BY key_id COLLATE "C"'
            ).fetchall()
        )
        return [str(r[0]) for r in rows]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


_SHARED: dict[str, PostgresSealedKeys] = {}


def shared(conninfo: str) -> PostgresSealedKeys:
    found = _SHARED.get(conninfo)
    if found is None:
        found = _SHARED[conninfo] = PostgresSealedKeys(conninfo)
    return found
