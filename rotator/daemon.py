"""The daemon: the one-daemon lock, start-up convergence, and APScheduler driving the tick.
`rotator run --once` goes through the same session (lock -> start-up -> tick)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import FrameType

import structlog
from apscheduler.schedulers.background import BackgroundScheduler

from .api.server import ApiServer
from .app import TickReport
from .bootstrap import App
from .domain.errors import ExternalError, RotatorError, StoreError
from .metrics.daemon import DaemonMetrics

log = structlog.get_logger("rotator")


class Daemon:
    def __init__(self, app: App) -> None:
        self.app = app
        self.stop_event = threading.Event()
        # APScheduler 3 holds its job-store lock while shutdown() waits for running jobs, so
        # a tick that adds its wake-up job during shutdown would deadlock. Ticks run under
        # this lock and stop adding jobs once `stopping` is set (under the same lock).
        self.tick_lock = threading.Lock()
        self.stopping = False
        # set by SIGUSR1 (an operator's emergency): rewrite the signer from the log before
        # the next tick, in case the command itself could not
        self.resync = False
        # tick outcomes and readiness; served over HTTP with [metrics] listen (`run` only)
        self.metrics = DaemonMetrics(app)
        self.api: ApiServer | None = None  # the HTTP API with [api] listen (`run` only)
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            job_defaults={
                # The default grace of 1 s drops runs after a pause or restart; a late tick
                # is still useful, and coalescing keeps it to one.
                "misfire_grace_time": 3600,
                "coalesce": True,
                "max_instances": 1,
            },
        )

    @contextlib.contextmanager
    def session(self, serve: bool = False) -> Iterator[list[str]]:
        """Hold the one-daemon lock and converge after any crash (orphan keys wiped, signer
        rewritten from the log); yields the wiped key ids. `serve`: the metrics endpoint,
        up from the lock on (a second daemon fails on the lock, not on the port), so that
        /healthz answers during a long convergence."""
        lock = self.app.ctx.lock
        assert lock is not None
        lock.acquire()
        try:
            if serve:
                self.metrics.serve()
                if self.app.config.api.enabled:
                    self.api = ApiServer(self.app.config, self.tick_now)
                    self.api.start()
            problem = self.app.store.consistency_problem()
            if problem:  # never act on a projection that is not the log's
                raise StoreError(
                    f"refusing to start: {problem}; run `rotator audit verify`, then "
                    "`rotator db rebuild` if the log itself is intact"
                )
            try:
                wiped = self.app.lifecycle.startup()
            except ExternalError as exc:  # e.g. the signer reload failed: retried on activation
                log.error("startup_sync_failed", error=exc.reason)
                wiped = []
            self.app.keypool.converge()
            self.metrics.started()
            yield wiped
        finally:
            if self.api is not None:
                self.api.stop()
                self.api = None
            self.metrics.close()
            lock.release()

    def run_once(self) -> TickReport:
        with self.session():
            return self.app.lifecycle.tick()

    def tick(self) -> None:
        with self.tick_lock:
            if self.stopping:
                return
            self._tick()
            self._schedule_wakeup()

    def _tick(self) -> None:
        if self.resync:
            self.resync = False
            try:
                self.app.signing.sync()
            except RotatorError as exc:
                self.resync = True  # again on the next tick
                log.error("signer_resync_failed", error=str(exc))
        started = time.monotonic()
        try:
            report = self.app.lifecycle.tick()
            self.metrics.tick_done(report, time.monotonic() - started)
            if report.progressed or report.failed:
                log.info(
                    "tick",
                    generated=report.generated,
                    succeeded=report.succeeded,
                    failed=report.failed,
                )
            elif self.app.keypool.enabled:
                # idle: top up the key pool, for at most half a tick interval
                added = self.app.keypool.refill(min(self.app.config.tick_seconds / 2, 30.0))
                if added:
                    log.info("key_pool_refilled", added=added)
        except RotatorError as exc:
            log.error("tick_failed", error=str(exc))
            self.metrics.tick_failed("error", str(exc))
        except Exception as exc:  # keep the daemon alive; the next tick retries
            log.exception("tick_crashed")
            self.metrics.tick_failed("crash", f"crashed: {type(exc).__name__}: {exc}")

    def _schedule_wakeup(self) -> None:
        """Wake exactly when the next action is due if that is before the next tick. The
        job is rebuilt from the log (next_due), never persisted in a job store."""
        nxt = self.app.lifecycle.next_due()
        if nxt is None:
            return
        tick_at = datetime.now(UTC) + timedelta(seconds=self.app.config.tick_seconds)
        if nxt < tick_at:
            self.scheduler.add_job(
                self.tick,
                "date",
                run_date=max(nxt, datetime.now(UTC)),
                id="wakeup",
                replace_existing=True,
            )

    def run(self, duration: float | None = None) -> None:
        with self.session(serve=True) as wiped, SignalPipe() as signals:
            log.info(
                "daemon_started",
                database=str(self.app.config.database),
                policies=self.app.policies.names(),
                orphans_wiped=len(wiped),
                pid=os.getpid(),
            )
            # webhook couriers: threads of their own, never inside a tick or under its locks
            deliveries = self.app.deliveries()
            self.metrics.watch_deliveries(deliveries.stats)
            deliveries.start()
            try:
                self.scheduler.add_job(
                    self.tick,
                    "interval",
                    seconds=self.app.config.tick_seconds,
                    id="tick",
                    replace_existing=True,
                    next_run_time=datetime.now(UTC),
                )
                self.scheduler.start()
                self._serve_signals(signals, duration)
            finally:
                with self.tick_lock:  # waits for a running tick to finish its step
                    self.stopping = True
                if self.scheduler.running:
                    self.scheduler.shutdown(wait=True)  # let a running tick finish its step
                deliveries.stop(self.app.config.webhooks.timeout + 5)
                log.info("daemon_stopped")

    def _serve_signals(self, signals: SignalPipe, duration: float | None) -> None:
        """The main thread's loop: signals arrive here as bytes, never as work done inside
        a handler (a handler that logs or takes a lock deadlocks when a second signal
        interrupts the first one's log line)."""
        end = None if duration is None else time.monotonic() + duration
        while not self.stop_event.is_set():
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                return
            for signum in signals.wait(_POLL_S if left is None else min(left, _POLL_S)):
                if signum == signal.SIGUSR1:
                    self._wake()
                else:
                    log.info("signal_received", signal=signal.Signals(signum).name)
                    self.stop_event.set()

    def tick_now(self, resync: bool = False) -> None:
        """An API write asks for a tick now (after an emergency, with the signer rewritten
        from the log first, as SIGUSR1 does)."""
        if resync:
            self.resync = True
        if not self.stopping and self.scheduler.running:
            self.scheduler.modify_job("tick", next_run_time=datetime.now(UTC))

    def _wake(self) -> None:
        # `rotator rotate --emergency` asks for a tick now instead of at the next interval,
        # with the signer rewritten from the log first in case the command could not.
        self.resync = True
        if not self.stopping and self.scheduler.running:
            self.scheduler.modify_job("tick", next_run_time=datetime.now(UTC))


# how often the main loop looks at stop_event when no signal comes (another thread may set it)
_POLL_S = 0.5
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


def _note(signum: int, frame: FrameType | None) -> None:
    """Does nothing: the interpreter has already written the signal's number to the wakeup
    socket, which the main loop reads."""


class SignalPipe:
    """SIGTERM, SIGINT and SIGUSR1 as bytes on a socket (signal.set_wakeup_fd) while the
    daemon runs; the previous handlers and wakeup fd come back on exit."""

    def __enter__(self) -> SignalPipe:
        self.reader, self.writer = socket.socketpair()
        self.reader.setblocking(False)
        self.writer.setblocking(False)
        self.old_fd = signal.set_wakeup_fd(self.writer.fileno(), warn_on_full_buffer=False)
        self.old = {s: signal.signal(s, _note) for s in _SIGNALS}
        return self

    def wait(self, timeout: float) -> list[int]:
        """The signals that arrived, in order, waiting at most `timeout` seconds for one."""
        ready, _, _ = select.select([self.reader], [], [], timeout)
        if not ready:
            return []
        try:
            return list(self.reader.recv(256))
        except BlockingIOError:
            return []

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.old.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self.old_fd)
        self.reader.close()
        self.writer.close()
