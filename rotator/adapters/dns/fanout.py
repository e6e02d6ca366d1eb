"""Backends whose unit of work is one zone (an UPDATE, an API request per zone): the
zones of a batch are sent several at once, each zone's own changes in order."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from ...domain.errors import ExternalError, PublishError
from ...ports import RecordChange, ZoneChanges

MAX_ZONES_AT_ONCE = 8  # 1,000 NS-delegated customers are 1,000 zones


class ZoneApplier(Protocol):
    def apply(self, zone: str, changes: Sequence[RecordChange]) -> str: ...


class PerZone:
    """publish() for a backend that implements apply(zone, changes) -> where, raising
    PublishError; its own pool, so a slow backend holds no thread of another's."""

    _pool: ThreadPoolExecutor | None = None

    def apply(self, zone: str, changes: Sequence[RecordChange]) -> str:
        raise NotImplementedError

    def serves(self, zone: str) -> bool:
        return True  # whatever it was given: a router picked this backend for the zone

    def in_rounds(self, zone: str) -> bool:
        return False

    def publish(self, batch: Sequence[ZoneChanges]) -> list[str | PublishError]:
        if len(batch) < 2:
            return [self._one(zone, changes) for zone, changes in batch]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=MAX_ZONES_AT_ONCE, thread_name_prefix=type(self).__name__
            )
        futures = [self._pool.submit(self._one, zone, changes) for zone, changes in batch]
        return [f.result() for f in futures]

    def _one(self, zone: str, changes: Sequence[RecordChange]) -> str | PublishError:
        try:
            return self.apply(zone, changes)
        except PublishError as exc:
            return exc
        except ExternalError as exc:  # a backend's other outside failure, kept as one line
            return PublishError(exc.reason, exc.code)
