"""Leadership among the daemons that share one database: a lease with an epoch that goes up
by one each time a node takes it, taken and renewed on the database's own clock. Only the
leader runs ticks and writes the signers; the store checks every append of leader work
against the lease in the same transaction (fencing), so a paused or cut-off former leader
is refused, never able to record (Kleppmann's fencing tokens; a lease alone does not
fence)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ..timeutil import iso


@dataclass(frozen=True)
class Leader:
    """Who holds the lease, as the database says."""

    node: str
    epoch: int  # one more each time a node takes the lease
    since: datetime  # when this node took it (the database's clock)
    expires: datetime  # when it runs out unless renewed (the database's clock)
    holder: str = ""  # `pid@host` of the process holding it
    live: bool = True  # not run out at the moment it was read

    def as_json(self) -> dict[str, object]:
        """The lease as `status --json` and GET /v1/status give it."""
        return {
            "node": self.node,
            "epoch": self.epoch,
            "since": iso(self.since),
            "expires": iso(self.expires),
        }


@dataclass(frozen=True)
class Lease(Leader):
    """The lease this process holds. `deadline` (time.monotonic()) is when this process
    stops leader work unless a renewal lands first: measured from before the renewal was
    sent, and shorter than the lease itself, so that it always comes before the lease runs
    out on the database's clock."""

    deadline: float = math.inf
    seconds: float = math.inf  # how long the lease runs from a renewal

    def left(self) -> float:
        """Seconds of leader work left without a renewal (0 once past the deadline)."""
        return max(0.0, self.deadline - time.monotonic())


class Leadership(Protocol):
    # False: one node only (SQLite, where the file lock keeps one daemon), which always leads
    shared: bool

    def acquire(self, node: str) -> Lease | None:
        """Take the lease if it ran out or `node` held it already (a restart takes over
        from itself: the epoch goes up all the same); None if another node holds it."""
        ...

    def renew(self, lease: Lease) -> Lease | None:
        """The lease extended from now, or None if it ran out or another node took it."""
        ...

    def release(self, lease: Lease) -> None:
        """Let it run out now (a clean stop): a standby takes over at its next try."""
        ...

    def current(self) -> Leader | None:
        """Who holds or last held the lease; None if no node ever did."""
        ...

    def wake(self) -> int | None:
        """Ask the leading daemon to tick now (an operator's emergency): its pid, or None
        if no lease is live."""
        ...

    def close(self) -> None: ...


class Fencing(Protocol):
    def fence(self, lease: Lease | None) -> None:
        """From now on every append is checked against `lease` in its own transaction and
        refused (FencedOut) once another node took it or it ran out; None: appends are not
        checked (an operator's command: stream versions order them)."""
        ...


class LeaderWork(Protocol):
    def check(self) -> None:
        """Raise FencedOut unless this process may still do leader work (a side effect
        the log will not see otherwise, such as a signer write)."""
        ...

    def epoch(self) -> int | None:
        """The epoch of the lease this process leads under; None when it does not lead."""
        ...


class Unfenced:
    """Leader work needs no lease here: operator commands and tests."""

    def check(self) -> None:
        return None

    def epoch(self) -> int | None:
        return None
