"""Idempotency keys in SQLite, in a file of their own beside the database
(`<database>.api-idempotency`, 0600: a reply may hold a new webhook's secret). Not in the
event log: replies are a cache of answers that expires, not facts to audit."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from datetime import datetime, timedelta
from pathlib import Path

from ...ports.idempotency import Reply, Seen

TTL = timedelta(hours=24)  # as the RFC draft suggests; then the key is free again

SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    digest TEXT NOT NULL,
    at REAL NOT NULL,    -- unix time of the first request: the key expires TTL later
    status INTEGER,      -- NULL while the first request is being processed
    body TEXT,
    PRIMARY KEY (owner, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS replies_at ON replies (at);
"""


def replies_path(database: Path) -> Path:
    return database.with_name(database.name + ".api-idempotency")


class SqliteIdempotencyKeys:
    def __init__(self, path: Path, ttl: timedelta = TTL) -> None:
        self.ttl = ttl.total_seconds()
        # made 0600 before SQLite opens it (its -wal and -shm files take the same mode)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600))
        # request threads share it, one at a time (the lock)
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.lock = threading.Lock()
        self.conn.execute("PRAGMA busy_timeout = 5000")
        self.conn.execute("PRAGMA journal_mode = WAL")
        # commits are not fsynced: a restart keeps every reply, a power loss may lose the
        # last ones, whose retries then run again and meet the use cases' own checks
        # (an identity already managed, a key already imported)
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.executescript(SCHEMA)
        # one daemon serves the API for a database (its lock): a key still claimed now was
        # claimed by a process that stopped mid-request, and nobody finishes it
        self.conn.execute("DELETE FROM replies WHERE status IS NULL")

    def claim(self, owner: str, key: str, digest: str, now: datetime) -> Seen | None:
        at = now.timestamp()
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                # expired keys go first (an index range, empty almost every time)
                self.conn.execute("DELETE FROM replies WHERE at < ?", (at - self.ttl,))
                row = self.conn.execute(
                    "SELECT digest, status, body FROM replies WHERE owner = ? AND key = ?",
                    (owner, key),
                ).fetchone()
                if row is None:
                    self.conn.execute(
                        "INSERT INTO replies (owner, key, digest, at) VALUES (?, ?, ?, ?)",
                        (owner, key, digest, at),
                    )
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
        if row is None:
            return None
        first, status, body = row
        return Seen(first, None if status is None else Reply(status, json.loads(body)))

    def finish(self, owner: str, key: str, reply: Reply) -> None:
        body = json.dumps(reply.body, separators=(",", ":"))
        with self.lock:
            self.conn.execute(
                "UPDATE replies SET status = ?, body = ? WHERE owner = ? AND key = ?",
                (reply.status, body, owner, key),
            )

    def release(self, owner: str, key: str) -> None:
        with self.lock:
            self.conn.execute(
                "DELETE FROM replies WHERE owner = ? AND key = ? AND status IS NULL", (owner, key)
            )

    def close(self) -> None:
        with self.lock:
            self.conn.close()
