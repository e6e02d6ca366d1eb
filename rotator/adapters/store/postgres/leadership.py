"""The leader's lease on PostgreSQL: the one row of the `leader` table, taken, renewed and
let go by single UPDATEs on a connection of its own, every time on the server's clock
(clock_timestamp(): no two hosts' clocks are compared). Taking it adds one to the epoch;
the store checks node and epoch, and that the lease has not run out, inside every write
transaction of leader work (check_fence), holding the row FOR SHARE until it commits: a
node taking over waits for that commit, and a former leader's later write is refused.

The lease times follow cert-manager's leader election (Kubernetes' client-go): the lease
runs `lease` seconds from its last renewal; the leader renews every `retry` seconds and
gives up leader work once `renew` seconds passed without a renewal landing, well before
the lease runs out on the server, so that nobody else can lead while it still works."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import time
from typing import Any

import psycopg

from ....domain.errors import FencedOut, StoreError
from ....ports import Leader, Lease
from .connection import Conn, connect, pg_hint

_LEASE = "make_interval(secs => %s)"
_COLUMNS = "node, epoch, since, expires_at, holder, expires_at > clock_timestamp()"
ACQUIRE = (
    "UPDATE leader SET node = %s, holder = %s, epoch = epoch + 1, since = clock_timestamp(), "
    f"expires_at = clock_timestamp() + {_LEASE} "
    "WHERE id = 1 AND (expires_at <= clock_timestamp() OR node = %s) "
    f"RETURNING {_COLUMNS}"
)
RENEW = (
    f"UPDATE leader SET expires_at = clock_timestamp() + {_LEASE} "
    "WHERE id = 1 AND node = %s AND epoch = %s AND expires_at > clock_timestamp() "
    f"RETURNING {_COLUMNS}"
)
RELEASE = (
    "UPDATE leader SET expires_at = clock_timestamp() "
    "WHERE id = 1 AND node = %s AND epoch = %s AND expires_at > clock_timestamp()"
)
CURRENT = f"SELECT {_COLUMNS} FROM leader WHERE id = 1"
# in the writer's transaction, after the writers' lock: the row stays shared until commit
FENCE = f"SELECT {_COLUMNS} FROM leader WHERE id = 1 FOR SHARE"


def holder_name() -> str:
    return f"{os.getpid()}@{socket.gethostname()}"


def leader_of(row: Any) -> Leader | None:
    node, epoch, since, expires, holder, live = row
    if not node:
        return None
    return Leader(str(node), int(epoch), since, expires, str(holder), bool(live))


class PgLeadership:
    shared = True

    def __init__(self, url: str, where: str, lease: float, renew: float) -> None:
        """`lease`: seconds a lease runs from its last renewal on the server's clock;
        `renew`: seconds this process goes on with leader work after it sent the last
        renewal that landed (less than `lease`)."""
        self.url, self.where = url, where
        self.lease_s, self.renew_s = lease, renew
        self.holder = holder_name()
        self.conn: Conn | None = None

    def acquire(self, node: str) -> Lease | None:
        sent = time.monotonic()
        row = self._one(ACQUIRE, [node, self.holder, self.lease_s, node])
        return None if row is None else self._lease(row, sent)

    def renew(self, lease: Lease) -> Lease | None:
        sent = time.monotonic()
        row = self._one(RENEW, [self.lease_s, lease.node, lease.epoch])
        return None if row is None else self._lease(row, sent)

    def release(self, lease: Lease) -> None:
        self._one(RELEASE, [lease.node, lease.epoch], rows=False)

    def current(self) -> Leader | None:
        row = self._one(CURRENT, [])
        return None if row is None else leader_of(row)

    def wake(self) -> int | None:
        """The leading daemon's pid; signalled now (SIGUSR1) when it runs on this host,
        else it gets to the work at its next tick."""
        now = self.current()
        if now is None or not now.live:
            return None
        pid, _, host = now.holder.partition("@")
        if not pid.isdigit():
            return None
        if host == socket.gethostname():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(pid), signal.SIGUSR1)
        return int(pid)

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()
            self.conn = None

    def _lease(self, row: Any, sent: float) -> Lease:
        found = leader_of(row)
        assert found is not None
        return Lease(**vars(found), deadline=sent + self.renew_s, seconds=self.lease_s)

    def _one(self, sql: str, params: list[Any], rows: bool = True) -> Any:
        """One statement's row (None when it matched none). A server that went away or a
        lock waited for too long: StoreError, and a fresh connection for the next try."""
        try:
            if self.conn is None or self.conn.broken:
                self.close()
                self.conn = connect(self.url, name=f"rotator lease {self.holder}"[:63])
            cursor = self.conn.execute(sql, params)
            return cursor.fetchone() if rows else None
        except psycopg.Error as exc:
            self.close()
            raise StoreError(f"database {self.where}: {pg_hint(exc)}") from None


def check_fence(conn: psycopg.Connection[Any], lease: Lease) -> None:
    """Inside a write transaction: FencedOut unless `lease` is still the live one. The
    transaction holds the lease's row until it ends, so it may not sit idle longer than
    the lease runs: a process paused inside it (SIGSTOP, a frozen VM) has its session
    ended by the server, instead of keeping every node from taking over."""
    if math.isfinite(lease.seconds):
        idle = max(1, round(lease.seconds * 1000))
        conn.execute(f"SET LOCAL idle_in_transaction_session_timeout = {idle}")
    row = conn.execute(FENCE).fetchone()
    now = None if row is None else leader_of(row)
    if now is not None and (now.node, now.epoch) == (lease.node, lease.epoch) and now.live:
        return
    mine = f"node {lease.node}'s lease (epoch {lease.epoch})"
    if now is None or (now.node, now.epoch) == (lease.node, lease.epoch):
        raise FencedOut(f"{mine} ran out; nothing was recorded, this node steps down")
    raise FencedOut(
        f"{mine} was taken over by node {now.node} (epoch {now.epoch}); nothing was "
        "recorded, this node steps down"
    )
