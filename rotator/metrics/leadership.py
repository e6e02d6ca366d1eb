"""Which node leads, read at scrape time from this daemon's lease keeper: whether this
node leads, the lease's epoch, and since when its holder leads (the database's clock).
Both nodes serve them: a standby says which node it last saw leading."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily, Metric

from ..ports import Leader, Lease


class Keeper(Protocol):
    node: str

    @property
    def lease(self) -> Lease | None: ...

    @property
    def seen(self) -> Leader | None: ...


class LeaderCollector:
    def __init__(self, keeper: Keeper) -> None:
        self.keeper = keeper

    def collect(self) -> Iterator[Metric]:
        lease, seen = self.keeper.lease, self.keeper.seen
        mine = GaugeMetricFamily(
            "rotator_leader", "1 while this node leads (ticks, writes the signers)", labels=["node"]
        )
        mine.add_metric([self.keeper.node], 1 if lease is not None else 0)
        yield mine
        leader = lease if lease is not None else seen
        if leader is None:
            return
        epoch = GaugeMetricFamily(
            "rotator_leader_epoch",
            "The epoch of the leader's lease (one more at each takeover), as last read",
            labels=["leader"],
        )
        epoch.add_metric([leader.node], leader.epoch)
        yield epoch
        since = GaugeMetricFamily(
            "rotator_leader_since_timestamp_seconds",
            "When the leader took its lease (Unix time, the database's clock)",
            labels=["leader"],
        )
        since.add_metric([leader.node], leader.since.timestamp())
        yield since
