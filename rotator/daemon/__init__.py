"""The daemon: this node's lock, leadership, start-up convergence, and APScheduler driving
the tick. `rotator run --once` goes through the same session (lock -> lease -> start-up ->
tick)."""

from __future__ import annotations

from .service import Daemon
from .signals import SignalPipe

__all__ = ["Daemon", "SignalPipe"]
