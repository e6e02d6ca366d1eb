"""The tick as the scheduler runs it: one at a time, only while this node leads, a resync
of the signers first when an operator's emergency asked for it, the key pool topped up
when idle, and a wake-up job for the next step due before the next interval."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from ..bootstrap import App
from ..domain.errors import FencedOut, RotatorError
from ..metrics.daemon import DaemonMetrics

log = structlog.get_logger("rotator")

JOBS = ("tick", "wakeup")


class Ticker:
    def __init__(
        self,
        app: App,
        metrics: DaemonMetrics,
        leading: Callable[[], bool],
        lost: Callable[[str], None],
    ) -> None:
        self.app, self.metrics = app, metrics
        self.leading, self.lost = leading, lost  # the lease keeper's view, and its step-down
        # APScheduler 3 holds its job-store lock while shutdown() waits for running jobs, so
        # a tick that adds its wake-up job during shutdown would deadlock. Ticks run under
        # this lock and stop adding jobs once `stopping` is set (under the same lock).
        self.tick_lock = threading.Lock()
        self.stopping = False
        # set by SIGUSR1 (an operator's emergency): rewrite the signer from the log before
        # the next tick, in case the command itself could not
        self.resync = False
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

    def start(self) -> None:
        """Ticks from now on, the first one at once (this node leads)."""
        self.scheduler.add_job(
            self.tick,
            "interval",
            seconds=self.app.config.tick_seconds,
            id="tick",
            replace_existing=True,
            next_run_time=datetime.now(UTC),
        )

    def pause(self) -> None:
        """No more ticks (this node stepped down); one running stops at its next check."""
        for job in JOBS:
            with contextlib.suppress(JobLookupError):
                self.scheduler.remove_job(job)

    def shutdown(self) -> None:
        with self.tick_lock:  # waits for a running tick to finish its step
            self.stopping = True
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)

    def now(self, resync: bool = False) -> None:
        """A tick now (an API write, SIGUSR1), the signer rewritten from the log first
        with `resync`."""
        if resync:
            self.resync = True
        if self.stopping or not self.scheduler.running:
            return
        with contextlib.suppress(JobLookupError):  # none on a standby: the leader works
            self.scheduler.modify_job("tick", next_run_time=datetime.now(UTC))

    def tick(self) -> None:
        with self.tick_lock:
            if self.stopping or not self.leading():
                return
            self._tick()
            if self.leading():
                self._schedule_wakeup()

    def _tick(self) -> None:
        if self.resync:
            self.resync = False
            try:
                self.app.signing.sync()
            except FencedOut as exc:
                self._refused(exc)
                return
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
        except FencedOut as exc:  # another node leads: not a failure of this tick's work
            self._refused(exc)
        except RotatorError as exc:
            log.error("tick_failed", error=str(exc))
            self.metrics.tick_failed("error", str(exc))
        except Exception as exc:  # keep the daemon alive; the next tick retries
            log.exception("tick_crashed")
            self.metrics.tick_failed("crash", f"crashed: {type(exc).__name__}: {exc}")

    def _refused(self, exc: FencedOut) -> None:
        log.warning("leader_work_refused", error=str(exc))
        self.lost(str(exc))

    def _schedule_wakeup(self) -> None:
        """Wake exactly when the next action is due if that is before the next tick. The
        job is rebuilt from the log (next_due), never persisted in a job store."""
        try:
            nxt = self.app.lifecycle.next_due()
        except RotatorError as exc:  # the next interval's tick tries again
            log.warning("next_due_unreadable", error=str(exc))
            return
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
