"""SIGTERM, SIGINT and SIGUSR1 as bytes the daemon's main loop reads, never work done
inside a handler."""

from __future__ import annotations

import contextlib
import select
import signal
import socket
from types import FrameType

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

    def poke(self) -> None:
        """Wake the main loop from another thread (a byte 0: no signal's number)."""
        with contextlib.suppress(OSError):  # full or closed: the loop wakes on its own
            self.writer.send(b"\0")

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
