"""One daemon per database: an exclusive flock on `<database>.lock` holding the pid."""

from __future__ import annotations

import fcntl
import os
import signal
from pathlib import Path
from typing import IO

from ...domain.errors import AlreadyRunning


class FlockDaemonLock:
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

    def wake_holder(self) -> int | None:
        # `rotator rotate --emergency` asks the running daemon for a tick now (SIGUSR1).
        pid = self.holder()
        if pid:
            os.kill(pid, signal.SIGUSR1)
        return pid

    def release(self) -> None:
        if self.fh is not None:
            fcntl.flock(self.fh, fcntl.LOCK_UN)
            self.fh.close()
            self.fh = None
