"""Projection states this store decoded or wrote, found again by their row.

A tick reads the same keys and identities step after step (publish, verify, activate), and
every append reads the states its fold starts from. Decoding a row and checking its MAC
cost more than reading it: a row read again exactly as it was decoded (or written) before,
every column and its MAC the same, is that state again, its MAC already checked. A row
that differs in anything is decoded and checked afresh, so an edit is caught as before.
"""

from __future__ import annotations

import contextlib
import dataclasses
import operator
import threading
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

S = TypeVar("S")

# rows per table: a tick's batch of steps (ports.DUE_BATCH) a few times over, not the whole
# projection (a million states would not fit in memory this way)
LIMIT = 20_000


class Decoded(Generic[S]):
    """Row -> state for one table, the oldest forgotten first past `limit`."""

    def __init__(self, state: type[S], limit: int = LIMIT) -> None:
        # the row's values in one order whatever order the query gave them in
        self.columns = (*(f.name for f in dataclasses.fields(state)), "mac")  # type: ignore[arg-type]
        self._values = operator.itemgetter(*self.columns)
        self.limit = limit
        self._states: dict[Hashable, S] = {}
        self._lock = threading.Lock()  # the API's threads read through the same store

    def _row(self, row: dict[str, Any]) -> Hashable | None:
        if not row.get("mac"):
            return None
        try:
            return self._values(row)  # type: ignore[no-any-return]
        except KeyError:  # a column the state has a default for: not worth keeping
            return None

    def get(self, row: dict[str, Any]) -> S | None:
        found = self._row(row)
        return None if found is None else self._states.get(found)

    def put(self, row: dict[str, Any], state: S) -> None:
        found = self._row(row)
        if found is None:
            return
        states = self._states
        states[found] = state
        if len(states) > self.limit:
            # one thread evicts at a time; another one's insert meanwhile may end this
            # round early (RuntimeError), the next put evicts the rest
            with self._lock, contextlib.suppress(RuntimeError, KeyError):
                while len(states) > self.limit:
                    del states[next(iter(states))]

    def __len__(self) -> int:
        return len(self._states)
