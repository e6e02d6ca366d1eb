"""One daemon: its node's lock, then standby or leader. A standby serves metrics and the
API and tries to take the lease every `retry` seconds; the node that takes it converges
(key files materialized from the key database, the signer rewritten from the log) and then
ticks, until it stops or loses the lease (a renewal that did not land in time, or a write
the store refused): then it stops ticking and writing the signers at once, and is a
standby again. With SQLite the one daemon leads from the start, on the same path."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator

import structlog

from ..api.server import ApiServer
from ..app import CourierStats, Deliveries, TickReport
from ..app.leading import LeaderSigner, LeaseKeeper
from ..bootstrap import App
from ..domain.errors import AlreadyRunning, ExternalError, FencedOut, RotatorError, StoreError
from ..metrics.daemon import DaemonMetrics
from ..ports import Lease
from .signals import SignalPipe
from .ticking import Ticker

log = structlog.get_logger("rotator")

# how often the main loop looks at stop_event and at the lease when no signal comes
POLL_S = 0.5


class Daemon:
    def __init__(self, app: App) -> None:
        self.app = app
        self.node = app.config.leadership.node
        self.keeper = LeaseKeeper(
            app.leadership, self.node, app.config.leadership.retry, app.store.fence
        )
        # leader work checks the lease: each pass of a tick, each signer write
        app.ctx.leader = self.keeper
        app.ctx.signer = LeaderSigner(app.ctx.signer, self.keeper.check)
        self.leading: Lease | None = None  # the lease the main thread last acted on
        self.stop_event = threading.Event()
        # tick outcomes, readiness, leadership; served over HTTP with [metrics] listen
        self.metrics = DaemonMetrics(app, self.keeper)
        self.ticker = Ticker(app, self.metrics, self._leads, self.keeper.lost)
        self.api: ApiServer | None = None  # the HTTP API with [api] listen (`run` only)
        self.deliveries: Deliveries | None = None  # webhook couriers, while leading

    def _leads(self) -> bool:
        return self.keeper.lease is not None

    @contextlib.contextmanager
    def session(self, serve: bool = False) -> Iterator[None]:
        """Hold this node's lock, and refuse a projection that is not the log's. `serve`:
        the metrics endpoint and the API, up from the lock on (a second daemon fails on the
        lock, not on the port), so that /healthz answers during a long convergence."""
        lock = self.app.ctx.lock
        assert lock is not None
        lock.acquire()
        try:
            if serve:
                self.metrics.serve()
                self.metrics.watch_deliveries(self._courier_stats)
                if self.app.config.api.enabled:
                    self.api = ApiServer(self.app.config, self.ticker.now)
                    self.api.start()
            problem = self.app.store.consistency_problem()
            if problem:  # never act on a projection that is not the log's
                raise StoreError(
                    f"refusing to start: {problem}; run `rotator audit verify`, then "
                    "`rotator db rebuild` if the log itself is intact"
                )
            if self.app.leadership.shared and not self.app.config.keys.sealed:
                log.warning(
                    "keys_not_shared",
                    node=self.node,
                    reason='keys.store is "files": another node cannot sign with the keys '
                    'this one makes; set keys.store = "database" (see high availability)',
                )
            yield
        finally:
            if self.api is not None:
                self.api.stop()
                self.api = None
            self.metrics.close()
            lock.release()

    def converge(self) -> list[str]:
        """Start-up convergence, as the leader: orphan key files wiped, the live keys'
        files made from the key database, the signer rewritten from the log, the key pool
        checked against it. The wiped key ids."""
        try:
            wiped = self.app.lifecycle.startup()
        except FencedOut:
            raise
        except ExternalError as exc:  # e.g. the signer reload failed: retried on activation
            log.error("startup_sync_failed", error=exc.reason)
            wiped = []
        self.app.keypool.converge()
        return wiped

    def run_once(self) -> TickReport:
        with self.session():
            if self.keeper.take() is None:
                seen = self.keeper.seen
                who = f"node {seen.node} ({seen.holder})" if seen else "another node"
                raise AlreadyRunning(
                    f"{who} leads on {self.app.config.database}: `run --once` runs only "
                    "while no daemon leads"
                )
            self.keeper.start()  # renewed while it works
            try:
                self.converge()
                return self.app.lifecycle.tick()
            finally:
                self.keeper.stop()

    def run(self, duration: float | None = None) -> None:
        with self.session(serve=True), SignalPipe() as signals:
            self.ticker.scheduler.start()
            try:
                # the first try here, so that a node that leads says it has started once
                # it converged (and the one daemon on SQLite always does); renewed meanwhile
                self.keeper.take()
                self.keeper.on_change = signals.poke  # acted on at once, not at the next poll
                self.keeper.start()
                wiped = self._follow()
                if self.leading is None:
                    self.metrics.standby()
                seen = self.keeper.seen
                log.info(
                    "daemon_started",
                    node=self.node,
                    role="leader" if self.leading else "standby",
                    leader=seen.node if seen else None,
                    database=str(self.app.config.database),
                    policies=self.app.policies.names(),
                    orphans_wiped=len(wiped),
                    pid=os.getpid(),
                )
                self._serve_signals(signals, duration)
            finally:
                self.ticker.shutdown()  # lets a running tick finish its step
                self._stop_deliveries()
                self.keeper.on_change = lambda: None  # the pipe closes with this block
                self.keeper.stop()  # the lease let go: a standby takes over at its next try
                log.info("daemon_stopped", node=self.node)

    def _follow(self) -> list[str]:
        """Act on what the lease keeper says: lead (converge, then tick) once this node
        took the lease, stand by once it lost it. The wiped key ids of a convergence."""
        lease = self.keeper.lease
        self.keeper.changed.clear()
        if lease is not None and (self.leading is None or self.leading.epoch != lease.epoch):
            return self._lead(lease)
        if lease is None and self.leading is not None:
            self._stand_by()
        return []

    def _lead(self, lease: Lease) -> list[str]:
        if self.leading is not None:  # lost and taken again between two looks
            self._stand_by()
        self.leading = lease
        if self.app.leadership.shared:  # every event this lease records says so
            self.app.ctx.recorder.origin = f"node {lease.node} epoch {lease.epoch}"
        log.info("leading", node=self.node, epoch=lease.epoch, since=lease.since.isoformat())
        self.metrics.leading()
        try:
            wiped = self.converge()
        except RotatorError as exc:  # e.g. the database went away: a standby, trying again
            if not isinstance(exc, FencedOut):
                log.error("startup_failed", node=self.node, error=str(exc))
            self.keeper.lost(str(exc))
            self._stand_by()
            return []
        self.metrics.started()
        self._start_deliveries(lease)
        self.ticker.start()
        return wiped

    def _stand_by(self) -> None:
        self.leading = None
        self.ticker.pause()
        self._stop_deliveries()
        self.metrics.standby()
        seen = self.keeper.seen
        log.warning(
            "stepped_down",
            node=self.node,
            reason=self.keeper.reason,
            leader=seen.node if seen is not None and seen.node != self.node else None,
        )

    def _start_deliveries(self, lease: Lease) -> None:
        # webhook couriers: threads of their own, never inside a tick or under its locks;
        # only the leader delivers (the cursors are this node's)
        self.deliveries = self.app.deliveries(lease)
        self.deliveries.start()

    def _stop_deliveries(self) -> None:
        deliveries, self.deliveries = self.deliveries, None
        if deliveries is not None:
            deliveries.stop(self.app.config.webhooks.timeout + 5)

    def _courier_stats(self) -> list[CourierStats]:
        deliveries = self.deliveries
        return list(deliveries.stats()) if deliveries is not None else []

    def _serve_signals(self, signals: SignalPipe, duration: float | None) -> None:
        """The main thread's loop: signals arrive here as bytes, never as work done inside
        a handler (a handler that logs or takes a lock deadlocks when a second signal
        interrupts the first one's log line); the lease keeper's news is looked at here."""
        end = None if duration is None else time.monotonic() + duration
        while not self.stop_event.is_set():
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                return
            for signum in signals.wait(POLL_S if left is None else min(left, POLL_S)):
                if signum == 0:  # the lease keeper's poke: looked at below
                    continue
                if signum == signal.SIGUSR1:
                    # `rotator rotate --emergency` asks for a tick now instead of at the
                    # next interval, the signer rewritten from the log first in case the
                    # command could not
                    self.ticker.now(resync=True)
                else:
                    log.info("signal_received", signal=signal.Signals(signum).name)
                    self.stop_event.set()
            if self.keeper.changed.is_set():
                self._follow()
