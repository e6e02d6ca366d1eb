"""The key pool: keys generated in idle time, so that onboarding and rotations take a key
instead of waiting for one (RSA-2048 costs tens of milliseconds per key and core). Each
pooled key is recorded (PoolKeyAdded) once it is on disk; a KeyGenerated with pooled=true
takes it; an emergency over every key wipes the pool (PoolKeyDiscarded)."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass

import structlog

from ..domain import events as ev
from ..domain.errors import ExternalError
from ..ports import LogFilter
from .context import Context

log = structlog.get_logger("rotator")

REFILL_BATCH = 64  # keys recorded per transaction while the pool fills


@dataclass(frozen=True)
class Level:
    algorithm: str
    bits: int
    keep: int  # keys the policies keep ready
    have: int | None  # keys ready now; None: the pool cannot be read (not ours, or none)


class KeyPoolKeeper:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @property
    def enabled(self) -> bool:
        return self.ctx.keypool is not None and any(self.ctx.pool_sizes.values())

    def levels(self) -> list[Level]:
        """Each kind the policies pool: how many they keep, how many are ready."""
        pool = self.ctx.keypool
        have: dict[tuple[str, int], int] | None = None
        if pool is not None:
            try:
                have = pool.counts()
            except OSError:  # another user's key store: not ours to look into
                have = None
        return [
            Level(a, b, n, None if have is None else have.get((a, b), 0))
            for (a, b), n in sorted(self.ctx.pool_sizes.items())
        ]

    def missing(self) -> dict[tuple[str, int], int]:
        """How many keys of each kind the pool lacks."""
        pool = self.ctx.keypool
        if pool is None:
            return {}
        have = pool.counts()
        return {
            kind: size - have.get(kind, 0)
            for kind, size in self.ctx.pool_sizes.items()
            if size > have.get(kind, 0)
        }

    def refill(self, budget_s: float) -> int:
        """Generate missing keys (in the worker processes) for about `budget_s` seconds;
        the number added. Run when a tick has nothing else to do: a due rotation never
        waits behind the pool for more than one batch."""
        pool = self.ctx.keypool
        if pool is None:
            return 0
        deadline = time.monotonic() + budget_s
        added = 0
        for (algorithm, bits), count in self.missing().items():
            while count > 0 and time.monotonic() < deadline:
                n = min(count, REFILL_BATCH)
                added += self._batch(algorithm, bits, n)
                count -= n
        return added

    def _batch(self, algorithm: str, bits: int, n: int) -> int:
        pool = self.ctx.keypool
        assert pool is not None
        ids = [uuid.uuid4().hex[:16] for _ in range(n)]
        workers = self.ctx.pool
        try:
            if workers is not None and algorithm == "rsa" and n > 1 and workers.workers > 1:
                executor = workers.executor()
                futures: list[Future[str]] = [
                    executor.submit(pool.add, key_id, algorithm, bits) for key_id in ids
                ]
                prints = [f.result() for f in futures]
            else:
                prints = [pool.add(key_id, algorithm, bits) for key_id in ids]
        except ExternalError as exc:
            log.error("key_pool_refill_failed", error=exc.reason)
            return 0
        now = self.ctx.clock.now()
        events = [
            ev.PoolKeyAdded(at=now, key_id=k, algorithm=algorithm, bits=bits, fingerprint=f)
            for k, f in zip(ids, prints, strict=True)
        ]
        self.ctx.recorder.append(events)
        return n

    def discard(self, actor: str, reason: str) -> list[ev.Event]:
        """Wipe every pooled key; the events that record it (the caller appends them with
        the rest of its decision). Wiped first: a key that may have leaked must go even
        if the recording then fails."""
        pool = self.ctx.keypool
        if pool is None:
            return []
        now = self.ctx.clock.now()
        return [
            ev.PoolKeyDiscarded(at=now, key_id=k, actor=actor, reason=reason)
            for k in pool.discard()
        ]

    def converge(self) -> int:
        """At start-up: wipe pooled keys no PoolKeyAdded names (a crash between writing
        one and recording it). Looks up only the keys in the pool."""
        pool = self.ctx.keypool
        if pool is None:
            return 0
        store = self.ctx.store
        recorded = {
            key_id
            for key_id in pool.inventory()
            if any(store.events(LogFilter(key_id=key_id, types=("PoolKeyAdded",), limit=1)))
        }
        wiped = pool.discard(keep=recorded)
        if wiped:
            log.warning("unrecorded_pool_keys_wiped", count=len(wiped))
        return len(wiped)
