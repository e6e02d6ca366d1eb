"""Crash injection for the recovery tests: `ROTATOR_CRASH_AT=<point>` makes the process die
(exit 99, no cleanup, like SIGKILL) right after a side effect and before its event is
recorded. Unset in production, where `point()` is a dictionary lookup."""

from __future__ import annotations

import os

CRASH_EXIT = 99


def point(name: str) -> None:
    if os.environ.get("ROTATOR_CRASH_AT") == name:
        os._exit(CRASH_EXIT)
