"""rotator's advisory locks on a PostgreSQL database (each database has its own): the
writers' lock, taken by every write transaction until it commits, so that log positions
and the hash chain are one total order; and the one-daemon-per-node lock, a session lock
held on a connection of its own for as long as the daemon runs (the server lets go of it
with the connection: a daemon killed by SIGKILL leaves nothing behind to clean up).

Several nodes each run a daemon on one database: which one works is the leader's lease
(leadership.py). The node lock keeps two daemons from running under one node name, which
would take the lease from each other in turn."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import zlib
from typing import Any

import psycopg

from ....domain.errors import AlreadyRunning
from .connection import connect, open_error

NAMESPACE = 0x524F54  # "ROT": the first key of every rotator advisory lock
WRITERS = 1
NODES = 0x524F55  # the first key of a node's lock; the second is its name's hash
_NAME = "rotator daemon"  # application_name prefix: `rotator daemon <pid>@<host>`


def xact_lock(conn: psycopg.Connection[Any], what: int) -> None:
    """Wait for `what` until the transaction ends (the connection's lock_timeout at most)."""
    conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", [NAMESPACE, what])


def node_key(node: str) -> int:
    """A node name as the second key of its lock (an int4; the same in every process)."""
    return zlib.crc32(node.encode()) & 0x7FFFFFFF


class AdvisoryDaemonLock:
    def __init__(self, url: str, where: str, node: str) -> None:
        self.url, self.where, self.node = url, where, node
        self.key = node_key(node)
        self.conn: psycopg.Connection[Any] | None = None

    def acquire(self) -> None:
        name = f"{_NAME} {os.getpid()}@{socket.gethostname()}"
        try:
            conn = connect(self.url, name=name[:63])
            row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", [NODES, self.key]).fetchone()
        except psycopg.Error as exc:
            raise open_error(self.where, exc) from None
        if not row or not row[0]:
            holder = self._holder(conn) or "unknown"
            conn.close()
            raise AlreadyRunning(
                f"another rotator daemon ({holder}) is already running as node {self.node} "
                f"on {self.where}; stop it first, or give this one a [leadership] node name "
                "of its own"
            )
        self.conn = conn

    def holder(self) -> tuple[int, str] | None:
        """(pid, host) of the daemon holding the lock, if any."""
        try:
            with connect(self.url, readonly=True) as conn:
                name = self._holder(conn)
        except psycopg.Error:
            return None
        if name is None:
            return None
        pid, _, host = name.removeprefix(_NAME).strip().partition("@")
        return (int(pid), host) if pid.isdigit() else None

    def wake_holder(self) -> int | None:
        # `rotator rotate --emergency` asks the running daemon for a tick now (SIGUSR1);
        # a daemon on another host ticks on its own schedule
        found = self.holder()
        if found is None or found[1] != socket.gethostname():
            return None
        with contextlib.suppress(ProcessLookupError):
            os.kill(found[0], signal.SIGUSR1)
            return found[0]
        return None

    def release(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()
            self.conn = None

    def _holder(self, conn: psycopg.Connection[Any]) -> str | None:
        row = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            [NODES, self.key],
        ).fetchone()
        return str(row[0]) if row and row[0] else None
