"""rotator's advisory locks on a PostgreSQL database (each database has its own): the
writers' lock, taken by every write transaction until it commits, so that log positions
and the hash chain are one total order; the one-daemon-per-node lock, a session lock held
on a connection of its own for as long as the daemon runs (the server lets go of it with
the connection: a daemon killed by SIGKILL leaves nothing behind to clean up); and the
signer lock across nodes, held while the signer targets are written (an operator's
emergency on one node and the leader's activation on another write one after the other).

Several nodes each run a daemon on one database: which one works is the leader's lease
(leadership.py). The node lock keeps two daemons from running under one node name, which
would take the lease from each other in turn."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import structlog

from ....domain.errors import AlreadyRunning, SignerError, SignerLockBusy
from ...signers.signer_lock import command_name
from .connection import connect, open_error, pg_hint

log = structlog.get_logger("rotator")

NAMESPACE = 0x524F54  # "ROT": the first key of every rotator advisory lock
WRITERS = 1
SIGNERS = 3  # the signer lock across nodes (2 was the one-daemon lock)
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
        return holder(conn, NODES, self.key)


def holder(conn: psycopg.Connection[Any], first: int, second: int) -> str | None:
    """The application name of the session that holds the advisory lock (first, second)."""
    row = conn.execute(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        [first, second],
    ).fetchone()
    return str(row[0]) if row and row[0] else None


class AdvisorySignerLock:
    """A session advisory lock on a connection of its own, taken after the host's own
    signer lock (its flock) and let go with the connection; waited for `wait` seconds at
    most, then SignerLockBusy naming the process that holds it.

    A leader's hold names its lease's epoch. A process paused while it holds the lock
    (SIGSTOP, a frozen VM) keeps its connection, and so the lock, however long it sleeps:
    the node that leads after it, with a later epoch, ends that session (the former
    leader's writes are refused by the store anyway) instead of waiting for it."""

    def __init__(self, url: str, where: str) -> None:
        self.url, self.where = url, where
        # the epoch of the lease this process's signer writes are leader work under
        self.epoch: Callable[[], int | None] = lambda: None

    @contextlib.contextmanager
    def hold(self, wait: float) -> Iterator[None]:
        epoch = self.epoch()
        mine = "" if epoch is None else f"e{epoch} "
        me = f"rotator signer {mine}{os.getpid()}@{socket.gethostname()} {command_name()}"
        try:
            conn = connect(self.url, name=me[:63])
        except psycopg.Error as exc:
            raise SignerError(f"the signer lock in {self.where}: {pg_hint(exc)}") from None
        try:
            self._take(conn, wait, epoch)
            yield
        finally:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def _take(self, conn: psycopg.Connection[Any], wait: float, epoch: int | None) -> None:
        deadline, pause = time.monotonic() + wait, 0.02
        try:
            while True:
                row = conn.execute(
                    "SELECT pg_try_advisory_lock(%s, %s)", [NAMESPACE, SIGNERS]
                ).fetchone()
                if row and row[0]:
                    return
                if epoch is not None:
                    self._end_former_leader(conn, epoch)
                if time.monotonic() >= deadline:
                    who = holder(conn, NAMESPACE, SIGNERS) or "another process"
                    raise SignerLockBusy(
                        f"the signer lock in {self.where} is held by {who}; waited {wait:g}s: "
                        "run the command again once it is done"
                    )
                time.sleep(pause)
                pause = min(pause * 2, 0.25)
        except psycopg.Error as exc:
            raise SignerError(f"the signer lock in {self.where}: {pg_hint(exc)}") from None

    def _end_former_leader(self, conn: psycopg.Connection[Any], epoch: int) -> None:
        found = conn.execute(
            "SELECT a.pid, a.application_name FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            [NAMESPACE, SIGNERS],
        ).fetchone()
        if found is None:
            return
        held = _EPOCH.match(str(found[1] or ""))
        if held is None or int(held.group(1)) >= epoch:  # a command, or this lease's own
            return
        conn.execute("SELECT pg_terminate_backend(%s)", [found[0]])
        log.warning("signer_lock_taken_over", holder=found[1], epoch=epoch)


_EPOCH = re.compile(r"^rotator signer e(\d+) ")
