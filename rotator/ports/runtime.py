"""The process around the use cases: time, policies by name, worker processes, the
one-daemon lock."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from datetime import datetime
from typing import Protocol

from ..domain.policy import Policy


class Clock(Protocol):
    def now(self) -> datetime: ...


# A policy by name; raises NotFound (naming the known ones) for an unknown name.
PolicySource = Callable[[str], Policy]


class Workers(Protocol):
    """Processes for CPU-bound work (key generation), kept between ticks."""

    workers: int

    def executor(self) -> Executor: ...

    def shutdown(self) -> None: ...


class DaemonLock(Protocol):
    """The one-daemon-per-database lock, as operator commands see it."""

    def acquire(self) -> None:
        """Take it, or raise AlreadyRunning naming the holder."""
        ...

    def release(self) -> None: ...

    def wake_holder(self) -> int | None:
        """Ask the daemon holding the lock to tick now; its pid, or None if none runs."""
        ...
