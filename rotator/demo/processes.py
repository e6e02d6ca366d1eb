"""The servers the demo and the tests start (named, pdns_server, moto, ...): each is
remembered until stopped, so that none outlives the Python process that started it."""

from __future__ import annotations

import atexit
import signal
import subprocess

_LIVE: set[subprocess.Popen[bytes]] = set()


def track(proc: subprocess.Popen[bytes]) -> None:
    """Remember a started server so that it is killed at exit if nobody stopped it."""
    _LIVE.add(proc)


def untrack(proc: subprocess.Popen[bytes]) -> None:
    _LIVE.discard(proc)


def stop_process(proc: subprocess.Popen[bytes], grace: float = 5) -> None:
    """SIGTERM to its pid, SIGKILL if it is still there `grace` seconds later; then
    forgotten."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    untrack(proc)


def _kill_all() -> None:  # last resort if a caller forgot to stop one
    for proc in list(_LIVE):
        if proc.poll() is None:
            proc.kill()


atexit.register(_kill_all)
