"""What the signers must hold, as a complete write reads it: the log's active keys (less the
keys an operation takes out, plus the ones it puts in), either as a list of entries or, for
a table of a million lines, as a stream in sender order.

Where it comes from: the store (a stream sorted by SQLite, every row's MAC checked, in
the worker processes at scale), or the set the last write rendered (`base`, kept in a
RowBuffer) patched with this change, when the log says nothing else changed it since
(Signing decides). Whatever is rendered is kept (`written`) as the next change's base."""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any, TypeVar

import structlog

from ..domain.errors import SignerError
from ..domain.names import pattern_problem
from ..ports import RowBuffer, SigningEntry, sender_order, signing_row
from .context import Context

log = structlog.get_logger("rotator")

T = TypeVar("T")
Rows = Iterator[tuple[Any, ...]]

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
        base: RowBuffer | None = None,
    ) -> None:
        self.ctx = ctx
        self.entries = entries  # the log's set as a list (MACs checked as it is read)
        self.gone = frozenset(gone)
        self.unsigned = frozenset(unsigned)
        self.added = tuple(added)
        self.base = base  # the set last written, if it is the log's set before this change
        self.written: RowBuffer | None = None  # what this write rendered, once it did
        self._lock = threading.Lock()  # the targets of one write run on threads

    def _keep(self, key_id: str, pattern: str, second: object) -> bool:
        return key_id not in self.gone and not (second and pattern in self.unsigned)

    def key_path(self, key_id: str) -> str:
        return self.ctx.keystore.key_file(key_id)

    def __call__(self) -> list[SigningEntry]:
        with self._lock:
            if self.written is None and self.base is None:
                keep = self._keep
                listed = [e for e in self.entries() if keep(e.key_id, e.signing_pattern, e.second)]
                listed += self.added
                self.written = self._kept(iter(sorted(map(signing_row, listed), key=sender_order)))
                return listed
            if self.written is None:
                self.written = self._kept(self._patched())
            rows = list(self.written.rows())
        path = self.ctx.keystore.key_file
        return [
            SigningEntry(r[0], r[1], r[2], path(r[0]), r[6], r[3], bool(r[7]), r[4], r[5])
            for r in rows
        ]

    def render(self, fn: Callable[[Rows], T]) -> T:
        with self._lock:
            if self.written is not None:  # another target of this write: the same rows
                return fn(self.written.rows())
            if self.base is not None:
                buffer = self.ctx.row_buffer()
                out = self._through(fn, self._patched(), buffer)
                self.written = buffer
                return out
            return self._from_store(fn)

    def _from_store(self, fn: Callable[[Rows], T]) -> T:
        store = self.ctx.store
        for _ in range(ATTEMPTS):
            before = store.data_version()
            wait = self._check()
            buffer = self.ctx.row_buffer()
            out = self._through(fn, self._stored(), buffer)
            wait()
            if store.data_version() == before:
                self.written = buffer
                return out
            buffer.close()
        raise SignerError(
            "the database kept changing while the signer tables were written; "
            "they are written again on the next attempt"
        )

    @staticmethod
    def _through(fn: Callable[[Rows], T], rows: Rows, buffer: RowBuffer) -> T:
        """fn(rows), every row also kept in `buffer` (all of them, whatever fn reads)."""

        stream = buffer.tee(rows)
        out = fn(stream)
        for _ in stream:
            pass
        return out

    def _kept(self, rows: Rows) -> RowBuffer:
        buffer = self.ctx.row_buffer()
        for _ in buffer.tee(rows):
            pass
        return buffer

    def _check(self) -> Callable[[], None]:
        pool = self.ctx.pool
        executor = pool.executor() if pool is not None and pool.workers > 1 else None
        return self.ctx.store.check_signing(executor, pool.workers if pool else 1)

    def _stored(self) -> Rows:
        return self._merged(self._wanted(self.ctx.store.signing_stream()))

    def _patched(self) -> Rows:
        assert self.base is not None
        keep = self._keep
        return self._merged(r for r in self.base.rows() if keep(r[0], r[6], r[7]))

    def _merged(self, rows: Rows) -> Rows:
        if not self.added:
            return rows
        added = sorted(map(signing_row, self.added), key=sender_order)
        return heapq.merge(rows, added, key=sender_order)

    def _wanted(self, rows: Rows) -> Rows:
        keep, changes = self._keep, bool(self.gone or self.unsigned)
        for r in rows:
            if changes and not keep(r[0], r[6], r[7]):
                continue
            problem = pattern_problem(r[6])
            if problem:  # a row edited behind rotator's back never reaches a signer table
                log.error("signing_entry_refused", key_id=r[0], error=problem)
                continue
            yield r
