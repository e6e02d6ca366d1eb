"""Fault injection for the recovery tests, each at a named point right after a side effect
and before its event is recorded: `ROTATOR_CRASH_AT=<point>` makes the process die there
(exit 99, no cleanup, like SIGKILL); `ROTATOR_STOP_AT=<point>` makes it stop itself there
once (SIGSTOP, as a paused process or a frozen VM), for the test to kill it or let it go
on (SIGCONT). Unset in production, where `point()` is two dictionary lookups."""

from __future__ import annotations

import os
import signal

CRASH_EXIT = 99


def point(name: str) -> None:
    if os.environ.get("ROTATOR_CRASH_AT") == name:
        os._exit(CRASH_EXIT)
    if os.environ.get("ROTATOR_STOP_AT") == name:
        del os.environ["ROTATOR_STOP_AT"]
        os.kill(os.getpid(), signal.SIGSTOP)
