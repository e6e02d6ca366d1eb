"""This process's part in leadership (ports/leadership.py): a keeper thread that takes the
lease when it is free (a standby tries every `retry` seconds) and renews it while it leads,
stepping down once no renewal landed before its deadline or the store refused a write
(FencedOut); the lock an operator's command holds to do leader work itself when no daemon
leads; and the signer targets written only while this process leads."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

import structlog

from ..domain.errors import AlreadyRunning, FencedOut, StoreError
from ..ports import Leader, Leadership, Lease, Signer, SignerChange, SigningEntry, TargetResult

log = structlog.get_logger("rotator")

Fence = Callable[[Lease | None], None]


class LeaseKeeper:
    """Holds this node's lease on a thread of its own. `stay`: a daemon, which goes back to
    standby and tries again after it lost the lease; else (a command) it stops trying."""

    def __init__(
        self, leadership: Leadership, node: str, retry: float, fence: Fence, stay: bool = True
    ) -> None:
        self.leadership, self.node, self.retry = leadership, node, retry
        self.fence, self.stay = fence, stay
        self._lease: Lease | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.changed = threading.Event()  # set when this node takes or loses the lease
        self.on_change: Callable[[], None] = lambda: None  # wakes whoever acts on it
        self.seen: Leader | None = None  # who leads, as last read (a standby shows it)
        self.reason = ""  # why this node last stepped down
        self._unavailable = ""  # the last error of a standby's tries, logged once
        self._thread: threading.Thread | None = None

    @property
    def lease(self) -> Lease | None:
        return self._lease

    def check(self) -> None:
        """Leader work may go on (LeaderWork): FencedOut once this node stepped down or its
        renewal deadline passed (a pause longer than that, SIGSTOP, a VM frozen: the other
        node may lead by now)."""
        lease = self._lease
        if lease is None:
            raise FencedOut(f"node {self.node} does not lead: {self.reason or 'standby'}")
        if lease.left() <= 0:
            why = f"no renewal of epoch {lease.epoch} landed before its deadline"
            self.lost(why)
            raise FencedOut(f"node {self.node} stopped leading: {why}")

    def epoch(self) -> int | None:
        lease = self._lease
        return None if lease is None else lease.epoch

    def take(self) -> Lease | None:
        """One try (a standby's, or a command's); the lease if this node leads now."""
        try:
            got = self.leadership.acquire(self.node)
            seen = got if got is not None else self.leadership.current()
        except StoreError as exc:
            if str(exc) != self._unavailable:
                log.warning("leadership_unavailable", node=self.node, error=str(exc))
            self._unavailable = str(exc)
            return None
        self._unavailable = ""
        self.seen = seen
        if got is None:
            return None
        self.fence(got)  # before anything can see the lease and start leader work
        with self._lock:
            self._lease, self.reason = got, ""
        log.info("leadership_taken", node=self.node, epoch=got.epoch, since=got.since.isoformat())
        self._changed()
        return got

    def lost(self, reason: str) -> None:
        """Step down now (a renewal that failed, a write the store refused): leader work
        stops at its next check, and the lease is let go for the other node to take."""
        with self._lock:
            lease, self._lease = self._lease, None
            if lease is None:
                return
            self.reason = reason
        log.warning("leadership_lost", node=self.node, epoch=lease.epoch, reason=reason)
        with contextlib.suppress(StoreError):
            self.leadership.release(lease)  # appends fenced by it are refused from now on
            self.seen = self.leadership.current()  # who leads instead, if anyone
        self._changed()

    def _changed(self) -> None:
        self.changed.set()
        self.on_change()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rotator-lease", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and let the lease go (the other node takes over at its next try)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        with self._lock:
            lease, self._lease = self._lease, None
        if lease is not None:
            self.reason = "stopped"
            with contextlib.suppress(StoreError):
                self.leadership.release(lease)
            log.info("leadership_released", node=self.node, epoch=lease.epoch)

    def _run(self) -> None:
        wait = 0.0 if self._lease is None else self.retry
        while not self._stop.wait(wait):
            lease = self._lease
            if lease is not None:
                wait = self._renew(lease)
            elif not self.stay:
                return
            else:
                self.take()
                wait = self.retry

    def _renew(self, lease: Lease) -> float:
        """One renewal; how long until the next."""
        try:
            renewed = self.leadership.renew(lease)
        except StoreError as exc:
            left = lease.left()
            if left <= 0:
                self.lost(f"no renewal landed before the deadline: {exc}")
                return self.retry
            log.warning("lease_renewal_failed", node=self.node, error=str(exc), left=round(left, 1))
            return min(self.retry, left)
        if renewed is None:
            self.lost("the lease ran out or another node took it")
            return self.retry
        with self._lock:
            if self._lease is lease:  # not stepped down meanwhile
                self._lease = self.seen = renewed
        return min(self.retry, renewed.left())


class LeaderLock:
    """The DaemonLock of an operator's command on a shared database: it does leader work
    itself (the steps after an emergency) only while no daemon leads, under a lease of its
    own that a keeper thread renews, its appends fenced by it."""

    def __init__(self, leadership: Leadership, node: str, retry: float, fence: Fence) -> None:
        self.keeper = LeaseKeeper(leadership, node, retry, fence, stay=False)
        self.leadership = leadership

    def acquire(self) -> None:
        if self.keeper.take() is None:
            now = self.keeper.seen
            who = f"node {now.node} ({now.holder})" if now is not None else "another node"
            raise AlreadyRunning(f"{who} leads: its daemon does the work")
        self.keeper.start()

    def release(self) -> None:
        self.keeper.stop()
        self.keeper.fence(None)

    def wake_holder(self) -> int | None:
        try:
            return self.leadership.wake()
        except StoreError:
            return None


class LeaderSigner:
    """The signer targets, written only while this process leads: a former leader that
    was paused past its deadline finds out here, before it writes anything."""

    def __init__(self, signer: Signer, check: Callable[[], None]) -> None:
        self.signer, self.check = signer, check

    def locked(self) -> AbstractContextManager[None]:
        return self.signer.locked()

    def apply(
        self,
        entries: Callable[[], Sequence[SigningEntry]],
        check: Sequence[SigningEntry] = (),
        wipe: Callable[[str], bool] = lambda key_id: False,
    ) -> list[TargetResult]:
        self.check()
        return self.signer.apply(entries, check, wipe)

    def withdraw(
        self,
        removed: Sequence[SigningEntry],
        entries: Callable[[], Sequence[SigningEntry]],
        wipe: bool,
    ) -> list[TargetResult]:
        self.check()
        return self.signer.withdraw(removed, entries, wipe)

    def problems(
        self, entries: Sequence[SigningEntry], beside: Sequence[SigningEntry] = ()
    ) -> list[str]:
        return self.signer.problems(entries, beside)

    def sweep(self) -> int:
        self.check()
        return self.signer.sweep()

    def change(
        self, change: SignerChange, check: Sequence[SigningEntry] = ()
    ) -> list[TargetResult]:
        self.check()
        return self.signer.change(change, check)

    def stamp(self, position: int | None) -> None:
        self.signer.stamp(position)

    def stamped(self) -> int | None:
        return self.signer.stamped()

    def trust(self) -> None:
        self.signer.trust()
