"""Composition root: builds the adapters from the config and runs the scheduler."""

from __future__ import annotations

import fcntl
import os
import signal
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import IO

import structlog
from apscheduler.schedulers.background import BackgroundScheduler

from .adapters.dns_rfc2136 import Rfc2136Publisher
from .adapters.keystore_fs import FsKeyStore
from .adapters.probe import AuthoritativeProbe
from .adapters.signer_opendkim import OpenDkimSigner
from .adapters.store_sqlite import SqliteEventStore, open_store
from .config import Config
from .domain.errors import AlreadyRunning, ExternalError, RotatorError
from .policies import PolicySet
from .service import Service
from .timeutil import SystemClock

log = structlog.get_logger("rotator")


@dataclass
class App:
    config: Config
    store: SqliteEventStore
    policies: PolicySet
    service: Service


def build(config: Config) -> App:
    policies = PolicySet(config.policy_dir)
    store = open_store(config.database)
    dns = config.dns
    publisher = Rfc2136Publisher(
        server=dns.primary,
        port=dns.primary_port,
        tsig_name=dns.tsig_name,
        tsig_secret=dns.tsig_secret,
        tsig_algorithm=dns.tsig_algorithm,
        timeout=dns.timeout,
    )
    probe = AuthoritativeProbe(
        port=dns.nameserver_port,
        timeout=dns.timeout,
        nameservers=dns.nameservers,
        resolver=dns.resolver,
    )
    signer = OpenDkimSigner(
        config.signer.key_table, config.signer.signing_table, config.signer.reload
    )
    service = Service(
        store=store,
        policies=policies.get,
        publisher=publisher,
        probe=probe,
        keystore=FsKeyStore(config.key_dir),
        signer=signer,
        clock=SystemClock(),
        nameserver_names=dns.esp_nameservers,
    )
    return App(config, store, policies, service)


class DaemonLock:
    """An exclusive flock beside the database: one daemon per database."""

    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + ".lock")
        self.fh: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # noqa: SIM115 - held for the daemon's lifetime
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            pid = fh.read().strip() or "unknown"
            fh.close()
            raise AlreadyRunning(
                f"another rotator daemon (pid {pid}) is already running on "
                f"{self.path.with_suffix('')}; stop it first (or use a different database)"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self.fh = fh

    def holder(self) -> int | None:
        """The pid written by the daemon holding the lock, if any."""
        try:
            text = self.path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def release(self) -> None:
        if self.fh is not None:
            fcntl.flock(self.fh, fcntl.LOCK_UN)
            self.fh.close()
            self.fh = None


class Daemon:
    def __init__(self, app: App) -> None:
        self.app = app
        self.stop_event = threading.Event()
        # APScheduler 3 holds its job-store lock while shutdown() waits for running jobs, so
        # a tick that adds its wake-up job during shutdown would deadlock. Ticks run under
        # this lock and stop adding jobs once `stopping` is set (under the same lock).
        self.tick_lock = threading.Lock()
        self.stopping = False
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

    def tick(self) -> None:
        with self.tick_lock:
            if self.stopping:
                return
            self._tick()
            self._schedule_wakeup()

    def _tick(self) -> None:
        try:
            report = self.app.service.tick()
            if report.progressed or report.failed:
                log.info(
                    "tick",
                    generated=report.generated,
                    succeeded=report.succeeded,
                    failed=report.failed,
                )
        except RotatorError as exc:
            log.error("tick_failed", error=str(exc))
        except Exception:  # keep the daemon alive; the next tick retries
            log.exception("tick_crashed")

    def _schedule_wakeup(self) -> None:
        """Wake exactly when the next action is due if that is before the next tick. The
        job is rebuilt from the log (next_due), never persisted in a job store."""
        nxt = self.app.store.next_due()
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
        lock = DaemonLock(self.app.config.database)
        lock.acquire()
        old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for sig in old:
                signal.signal(sig, self._on_signal)
            old[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, self._on_wakeup)
            try:
                wiped = self.app.service.startup()
            except ExternalError as exc:  # e.g. the signer reload failed: retried on activation
                log.error("startup_sync_failed", error=exc.reason)
                wiped = []
            log.info(
                "daemon_started",
                database=str(self.app.config.database),
                policies=self.app.policies.names(),
                orphans_wiped=len(wiped),
                pid=os.getpid(),
            )
            self.scheduler.add_job(
                self.tick,
                "interval",
                seconds=self.app.config.tick_seconds,
                id="tick",
                replace_existing=True,
                next_run_time=datetime.now(UTC),
            )
            self.scheduler.start()
            self.stop_event.wait(timeout=duration)
        finally:
            with self.tick_lock:  # waits for a running tick to finish its step
                self.stopping = True
            if self.scheduler.running:
                self.scheduler.shutdown(wait=True)  # let a running tick finish its step
            for sig, handler in old.items():
                signal.signal(sig, handler)
            lock.release()
            log.info("daemon_stopped")

    def _on_wakeup(self, signum: int, frame: FrameType | None) -> None:
        # `rotator rotate --emergency` asks for a tick now instead of at the next interval.
        if not self.stopping and self.scheduler.running:
            self.scheduler.modify_job("tick", next_run_time=datetime.now(UTC))

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("signal_received", signal=signal.Signals(signum).name)
        self.stop_event.set()
