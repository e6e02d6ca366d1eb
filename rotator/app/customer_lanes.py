"""Checks of customers' DNS on one shared pool of threads, fair between customers.

Each check has its own deadline, counted from when it starts, and the probe gives every
query only the time left before it, so a check ends by its deadline and frees its thread.
One customer's checks run on at most PER_CUSTOMER threads at once, one after the other:
a customer with many slow domains cannot take the pool. A check that gets no thread in
time (other customers are slow) is not run this pass: it is left for the next pass and
counts as nobody's failure. Only a check that ran out its own deadline is its customer's."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
V = TypeVar("V")

WORKERS = 16
PER_CUSTOMER = 4  # threads one customer's checks may hold at once: a quarter of the pool
GRACE_S = 0.5  # past a check's deadline, for its last query to return


@dataclass(frozen=True)
class Unchecked:
    """No verdict. `late`: the check ran out its own deadline (the customer's DNS is too
    slow, a failure of that customer); otherwise it got no thread in time (no one's)."""

    reason: str
    late: bool


@dataclass(frozen=True)
class Outcome(Generic[V]):
    """What one check returned, or raised, or why it has no verdict."""

    value: V | None = None
    error: Exception | None = None
    unchecked: Unchecked | None = None


class CustomerLanes:
    def __init__(self, name: str, workers: int = WORKERS, per_customer: int = PER_CUSTOMER):
        self.per_customer = per_customer
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)

    def run(
        self,
        items: Sequence[T],
        customer: Callable[[T], str],
        check: Callable[[T, float], V],
        within: float,
    ) -> list[Outcome[V]]:
        """check(item, deadline) for every item, each with `within` seconds from its start
        (deadline: a time.monotonic() instant). Returns by 2 x within + GRACE_S: checks
        start only in the first `within` seconds."""
        start_by = time.monotonic() + within
        stop = threading.Event()
        lock = threading.Lock()
        started: set[int] = set()
        done: dict[int, Outcome[V]] = {}

        def lane(indices: list[int]) -> None:
            for i in indices:
                now = time.monotonic()
                if stop.is_set() or now > start_by:
                    return
                with lock:
                    started.add(i)
                try:
                    out: Outcome[V] = Outcome(value=check(items[i], now + within))
                except Exception as exc:
                    out = Outcome(error=exc)
                with lock:
                    done[i] = out

        futures = [self.pool.submit(lane, indices) for indices in self._lanes(items, customer)]
        wait_all(futures, timeout=max(0.0, start_by - time.monotonic()) + within + GRACE_S)
        stop.set()
        with lock:
            return [
                done.get(i)
                or Outcome(
                    unchecked=Unchecked(
                        f"checking the customer's DNS took longer than {within:g}s"
                        if i in started
                        else "no thread free in time: checked on the next pass",
                        late=i in started,
                    )
                )
                for i in range(len(items))
            ]

    def _lanes(self, items: Sequence[T], customer: Callable[[T], str]) -> list[list[int]]:
        """Each customer's items dealt into up to per_customer lanes; every customer's first
        lane is queued before anyone's second."""
        by_customer: dict[str, list[list[int]]] = {}
        counts: dict[str, int] = {}
        for i, item in enumerate(items):
            who = customer(item)
            lanes = by_customer.setdefault(who, [])
            n = counts.get(who, 0)
            counts[who] = n + 1
            if n < self.per_customer:
                lanes.append([i])
            else:
                lanes[n % self.per_customer].append(i)
        rounds = range(max((len(lanes) for lanes in by_customer.values()), default=0))
        return [lanes[r] for r in rounds for lanes in by_customer.values() if r < len(lanes)]

    def close(self) -> None:
        """Wait for the checks still running (each ends by its deadline)."""
        self.pool.shutdown(wait=True, cancel_futures=True)
