"""A long-lived pool of worker processes for key generation (RSA keys take tens of
milliseconds each; a batch of thousands is CPU work for every core). Workers are started
with `spawn` (never fork a threaded daemon) and die with their parent: each watches its
parent pid, so a SIGKILLed daemon leaves no worker (and so no resource tracker) behind."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor

PARENT_CHECK_S = 0.5


def _watch_parent(parent: int) -> None:
    def watch() -> None:
        while True:
            if os.getppid() != parent:  # re-parented: the daemon is gone
                os._exit(1)
            time.sleep(PARENT_CHECK_S)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class WorkerPool:
    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def executor(self) -> Executor:
        """The pool, started on first use and kept for the process's lifetime."""
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_watch_parent,
                    initargs=(os.getpid(),),
                )
            return self._pool

    def shutdown(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
