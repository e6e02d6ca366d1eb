"""Leadership with one node (SQLite, where the daemon's file lock keeps one daemon per
database): it always leads and never loses the lease, so that the daemon runs the same
code on either database."""

from __future__ import annotations

from datetime import UTC, datetime

from ...ports import Leader, Lease

NEVER = datetime.max.replace(tzinfo=UTC)


class SoleLeadership:
    shared = False

    def __init__(self) -> None:
        self.held: Lease | None = None
        self.epoch = 0

    def acquire(self, node: str) -> Lease | None:
        self.epoch += 1
        self.held = Lease(node, self.epoch, datetime.now(UTC), NEVER)
        return self.held

    def renew(self, lease: Lease) -> Lease | None:
        return lease

    def release(self, lease: Lease) -> None:
        self.held = None

    def current(self) -> Leader | None:
        return self.held

    def wake(self) -> int | None:
        return None  # the file lock wakes its holder (FlockDaemonLock.wake_holder)

    def close(self) -> None:
        return None
