"""The signer lock: an exclusive flock shared by the daemon and operator commands, waited on
for a bounded time. Its holder writes who it is into the lock file (pid, command, since
when), so a waiter that gives up says whom it waited for instead of hanging with no word."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from ...domain.errors import SignerLockBusy

LOCK_WAIT = 120.0  # seconds; a healthy holder's write, reload and probe take far less


def command_name() -> str:
    """The command this process runs, without its options or their values (a --reason
    may say more than belongs in a lock file): e.g. "rotator rotate"."""
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "rotator"
    if program in ("__main__.py", "-m", "-c", ""):
        program = "rotator"
    words = [program]
    for word in sys.argv[1:3]:
        if word.startswith("-"):
            break
        words.append(word)
    return " ".join(words)[:80]


class SignerLock:
    def __init__(self, path: Path, wait: float = LOCK_WAIT) -> None:
        self.path = path
        self.wait = wait

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Exclusive across processes; SignerLockBusy once `wait` seconds passed."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+") as fh:
            self._take(fh)
            try:
                me = {"pid": os.getpid(), "command": command_name(), "since": time.time()}
                self._write(fh, me)
                yield
            finally:
                with contextlib.suppress(OSError):
                    fh.truncate(0)  # no holder: a waiter must not read the last one's name
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _take(self, fh: IO[str]) -> None:
        deadline = time.monotonic() + self.wait
        pause = 0.01
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                raise SignerLockBusy(self.busy())
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.25)

    @staticmethod
    def _write(fh: IO[str], holder: dict[str, object]) -> None:
        with contextlib.suppress(OSError):  # who holds it is a courtesy to waiters
            fh.truncate(0)
            fh.write(json.dumps(holder) + "\n")
            fh.flush()

    def holder(self) -> tuple[int, str, float] | None:
        """(pid, command, since) as the holder wrote them, if readable."""
        try:
            found = json.loads(self.path.read_text())
            return int(found["pid"]), str(found["command"]), float(found["since"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def busy(self) -> str:
        who = self.holder()
        waited = f"waited {self.wait:g}s for the signer lock {self.path}"
        if who is None:
            return (
                f"{waited}: another process holds it (it did not say which); "
                f"`fuser -v {self.path}` shows it; run the command again once it is done"
            )
        pid, command, since = who
        at = datetime.fromtimestamp(since, UTC).strftime("%H:%M:%S UTC")
        age = max(0, int(time.time() - since))
        return (
            f"the signer lock is held by pid {pid} ({command}) since {at} ({age}s ago); "
            f"{waited}: run the command again once it is done, or if that process is "
            f"stuck, stop it (kill {pid}) first"
        )
