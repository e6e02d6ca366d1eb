"""Sealed keys in an SQLite file of their own: for one node, and for the tests. Deleted rows
are zeroed in place (secure_delete) and the WAL is truncated after each delete, so that the
file does not keep a destroyed key's sealed copy beyond what the filesystem keeps."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from ...domain.errors import ExternalError
from ...timeutil import iso, utcnow

SCHEMA = """CREATE TABLE IF NOT EXISTS sealed_keys (
    key_id TEXT PRIMARY KEY,
    blob BLOB NOT NULL,
    sealed_at TEXT NOT NULL
)"""


class SqliteSealedKeys:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SqliteSealedKeys({self.path})"

    def __reduce__(self) -> tuple[Callable[[str], SqliteSealedKeys], tuple[str]]:
        # a worker process gets one instance (and connection) however many tasks name it
        return shared, (str(self.path),)

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with contextlib.suppress(FileExistsError):  # ours alone from the start
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            conn = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # a sealed key is on disk when put returns
            conn.execute("PRAGMA secure_delete=ON")
            conn.execute(SCHEMA)
            self._conn = conn
        return self._conn

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._connect()
            except sqlite3.Error as exc:
                raise ExternalError(f"key database {self.path}: {exc}") from None
            except OSError as exc:
                raise ExternalError(f"key database {self.path}: {exc.strerror}") from None

    def put(self, key_id: str, blob: bytes) -> None:
        with self._db() as db:
            db.execute(
                "INSERT INTO sealed_keys (key_id, blob, sealed_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key_id) DO UPDATE SET blob = excluded.blob, "
                "sealed_at = excluded.sealed_at",
                (key_id, blob, iso(utcnow())),
            )

    def get(self, key_id: str) -> bytes | None:
        with self._db() as db:
            row = db.execute("SELECT blob FROM sealed_keys WHERE key_id = ?", (key_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def replace(self, key_id: str, old: bytes, new: bytes) -> bool:
        with self._db() as db:
            cur = db.execute(
                "UPDATE sealed_keys SET blob = ?, sealed_at = ? WHERE key_id = ? AND blob = ?",
                (new, iso(utcnow()), key_id, old),
            )
        return cur.rowcount == 1

    def delete(self, key_id: str) -> bool:
        with self._db() as db:
            gone = db.execute("DELETE FROM sealed_keys WHERE key_id = ?", (key_id,)).rowcount
            if gone:  # the WAL's frames still hold the row: copy back and truncate it
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return gone == 1

    def ids(self) -> list[str]:
        with self._db() as db:
            return [str(r[0]) for r in db.execute("SELECT key_id FROM sealed_keys ORDER BY 1")]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


_SHARED: dict[str, SqliteSealedKeys] = {}


def shared(path: str) -> SqliteSealedKeys:
    found = _SHARED.get(path)
    if found is None:
        found = _SHARED[path] = SqliteSealedKeys(path)
    return found
