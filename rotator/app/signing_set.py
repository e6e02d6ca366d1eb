"""What the signers must hold, as a complete write reads it: the log's active keys (less the
keys an operation takes out, plus the ones it puts in), either as a list of entries or, for
a table of a million lines, as a stream in sender order read in bounded memory while the
rows' MACs are checked in the worker processes."""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any, TypeVar

import structlog

from ..domain.errors import SignerError
from ..domain.names import pattern_problem
from ..ports import SigningEntry, sender_order, signing_row
from .context import Context

log = structlog.get_logger("rotator")

T = TypeVar("T")

# A commit by another process between the check and the render (a customer added by an
# operator) makes them disagree on what they read: both are done again, this many times.
ATTEMPTS = 3


class SigningSet:
    """The log's signing set, less the signatures of the keys `gone` and the ESP's
    feedback-loop signatures for the patterns `unsigned` (customers leaving), plus `added`
    (keys an activation puts in before it is recorded)."""

    def __init__(
        self,
        ctx: Context,
        entries: Callable[[], list[SigningEntry]],
        gone: Collection[str] = (),
        unsigned: Collection[str] = (),
        added: Sequence[SigningEntry] = (),
    ) -> None:
        self.ctx = ctx
        self.entries = entries  # the log's set as a list (MACs checked as it is read)
        self.gone = frozenset(gone)
        self.unsigned = frozenset(unsigned)
        self.added = tuple(added)
        self._lock = threading.Lock()
        self._checked: int | None = None  # the data_version whose rows were checked

    def _keep(self, key_id: str, pattern: str, second: object) -> bool:
        return key_id not in self.gone and not (second and pattern in self.unsigned)

    def __call__(self) -> list[SigningEntry]:
        kept = [e for e in self.entries() if self._keep(e.key_id, e.signing_pattern, e.second)]
        return kept + list(self.added)

    def key_path(self, key_id: str) -> str:
        return self.ctx.keystore.key_file(key_id)

    def render(self, fn: Callable[[Iterator[tuple[Any, ...]]], T]) -> T:
        store = self.ctx.store
        for _ in range(ATTEMPTS):
            before = store.data_version()
            wait = self._check(before)
            out = fn(self._rows())
            wait()
            if store.data_version() == before:
                with self._lock:
                    self._checked = before
                return out
        raise SignerError(
            "the database kept changing while the signer tables were written; "
            "they are written again on the next attempt"
        )

    def _check(self, version: int) -> Callable[[], None]:
        with self._lock:
            if self._checked == version:  # another target of this write checked them
                return lambda: None
        pool = self.ctx.pool
        executor = pool.executor() if pool is not None and pool.workers > 1 else None
        return self.ctx.store.check_signing(executor, pool.workers if pool else 1)

    def _rows(self) -> Iterator[tuple[Any, ...]]:
        rows = (r for r in self.ctx.store.signing_stream() if self._wanted(r))
        if not self.added:
            return rows
        return heapq.merge(
            rows, sorted(map(signing_row, self.added), key=sender_order), key=sender_order
        )

    def _wanted(self, r: tuple[Any, ...]) -> bool:
        if not self._keep(r[0], r[6], r[7]):
            return False
        problem = pattern_problem(r[6])
        if problem:  # a row edited behind rotator's back never reaches a signer table
            log.error("signing_entry_refused", key_id=r[0], error=problem)
            return False
        return True
