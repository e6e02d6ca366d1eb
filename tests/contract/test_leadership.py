"""The leader's lease (ports.Leadership), run against every implementation, and the store's
fencing of leader work: with PostgreSQL two nodes share the lease (one at a time, the
epoch one more at each takeover, on the server's clock), and an append made under a lease
that was taken over or ran out is refused in its own transaction; with SQLite the one
node always leads and nothing is fenced."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from rotator.adapters.runtime.leadership import SoleLeadership
from rotator.adapters.store.postgres.leadership import PgLeadership
from rotator.domain.errors import FencedOut, StoreError
from rotator.ports import EventStore, Leadership, Lease

from .builders import added
from .conftest import OpenStore

OpenLeadership = Callable[..., Leadership]


@pytest.fixture
def open_leadership(open_store: OpenStore) -> Iterator[OpenLeadership]:
    """Leaderships on the test's database: the store's kind (the schema made first)."""
    store = open_store()
    url = getattr(store, "url", None)
    made: list[Leadership] = []

    def make(lease: float = 30.0, renew: float = 20.0) -> Leadership:
        made.append(SoleLeadership() if url is None else PgLeadership(url, "db", lease, renew))
        return made[-1]

    yield make
    for leadership in made:
        leadership.close()


def shared(leadership: Leadership) -> None:
    if not leadership.shared:
        pytest.skip("one node only: it always leads")


def test_a_node_takes_the_lease_and_keeps_it_by_renewals(open_leadership: OpenLeadership) -> None:
    lead = open_leadership()
    lease = lead.acquire("mx1")
    assert lease is not None and lease.node == "mx1" and lease.epoch >= 1
    assert 0 < lease.left() <= (20.0 if lead.shared else float("inf"))
    renewed = lead.renew(lease)
    assert renewed is not None and renewed.epoch == lease.epoch
    assert renewed.since == lease.since and renewed.expires >= lease.expires
    if lead.shared:
        now = lead.current()
        assert now is not None and (now.node, now.epoch, now.live) == ("mx1", lease.epoch, True)
        assert now.holder.partition("@")[0].isdigit()


def test_another_node_waits_until_the_lease_runs_out(open_leadership: OpenLeadership) -> None:
    shared(first := open_leadership(lease=1.0, renew=0.5))
    second = open_leadership(lease=1.0, renew=0.5)
    mine = first.acquire("mx1")
    assert mine is not None
    assert second.acquire("mx2") is None  # live: another node holds it
    time.sleep(1.2)
    theirs = second.acquire("mx2")
    assert theirs is not None and theirs.epoch == mine.epoch + 1
    assert first.renew(mine) is None  # taken over: no renewal brings it back
    now = first.current()
    assert now is not None and (now.node, now.epoch) == ("mx2", theirs.epoch)


def test_a_restarted_node_takes_over_from_itself_with_a_new_epoch(
    open_leadership: OpenLeadership,
) -> None:
    shared(lead := open_leadership())
    first = lead.acquire("mx1")
    again = open_leadership().acquire("mx1")  # the same node, a new process
    assert first is not None and again is not None and again.epoch == first.epoch + 1
    assert lead.renew(first) is None  # the old process's lease is gone


def test_a_released_lease_is_taken_at_once(open_leadership: OpenLeadership) -> None:
    shared(first := open_leadership())
    mine = first.acquire("mx1")
    assert mine is not None
    first.release(mine)
    now = first.current()
    assert now is not None and not now.live
    assert open_leadership().acquire("mx2") is not None


def fenced_store(open_store: OpenStore, lease: Lease) -> EventStore:
    store = open_store()
    store.fence(lease)
    return store


def test_leader_work_is_refused_once_another_node_took_over(
    open_store: OpenStore, open_leadership: OpenLeadership
) -> None:
    shared(first := open_leadership(lease=1.0, renew=0.5))
    mine = first.acquire("mx1")
    assert mine is not None
    store = fenced_store(open_store, mine)
    store.append([added("a.com")], {})  # live: leader work goes in
    time.sleep(1.2)
    with pytest.raises(FencedOut, match=r"node mx1's lease \(epoch \d+\) ran out"):
        store.append([added("b.com")], {})
    theirs = open_leadership().acquire("mx2")
    assert theirs is not None
    with pytest.raises(FencedOut, match=f"taken over by node mx2 \\(epoch {theirs.epoch}\\)"):
        store.append([added("b.com")], {})
    assert store.info()["events"] == 1  # nothing of the refused batches
    store.fence(None)  # an operator's command: stream versions order it, no lease
    store.append([added("b.com")], {})
    assert store.info()["events"] == 2


def test_one_node_leads_and_appends_are_not_fenced(
    open_store: OpenStore, open_leadership: OpenLeadership
) -> None:
    lead = open_leadership()
    if lead.shared:
        pytest.skip("several nodes: fenced (the test above)")
    lease = lead.acquire("solo")
    assert lease is not None and lead.acquire("other") is not None  # never refused
    store = fenced_store(open_store, lease)
    store.append([added("a.com")], {})
    assert store.info()["events"] == 1


def test_a_takeover_waits_for_the_leaders_write_to_commit(
    open_store: OpenStore, open_leadership: OpenLeadership
) -> None:
    """The lease row is held FOR SHARE by a fenced write until it commits: a node taking
    over after the lease ran out meanwhile comes after that write, never beside it."""
    shared(first := open_leadership(lease=1.0, renew=0.5))
    mine = first.acquire("mx1")
    assert mine is not None
    store = fenced_store(open_store, mine)

    def write() -> None:
        with store._write():  # type: ignore[attr-defined]
            store.sql.execute("SELECT pg_sleep(2)")  # type: ignore[attr-defined]

    writer = threading.Thread(target=write)
    writer.start()  # the lease checked, the row held; the lease runs out meanwhile
    took: list[Lease | None] = []
    taker = threading.Thread(target=lambda: took.append(open_leadership().acquire("mx2")))
    try:
        time.sleep(1.2)
        taker.start()
        taker.join(0.5)
        assert taker.is_alive() and not took  # waiting for the writer
    finally:
        writer.join(10)
    taker.join(10)
    assert took and took[0] is not None and took[0].epoch == mine.epoch + 1


def test_a_leader_paused_inside_its_write_holds_the_row_no_longer_than_the_lease(
    open_store: OpenStore, open_leadership: OpenLeadership
) -> None:
    """A process stopped inside a fenced write (its connection open, its transaction
    idle) would keep every node from taking over: the server ends that session once it
    sat idle for as long as the lease runs, and the write never commits."""
    shared(first := open_leadership(lease=1.0, renew=0.5))
    mine = first.acquire("mx1")
    assert mine is not None
    store = fenced_store(open_store, mine)
    writing = store._write()  # type: ignore[attr-defined]
    writing.__enter__()  # and then nothing: paused
    time.sleep(1.5)
    theirs = open_leadership().acquire("mx2")
    assert theirs is not None and theirs.epoch == mine.epoch + 1
    with pytest.raises(StoreError):
        writing.__exit__(None, None, None)  # its commit: the session is gone
    store.fence(None)
    store.append([added("a.com")], {})  # the next statement opens a connection again
    assert store.info()["events"] == 1


def test_the_lease_is_read_on_the_servers_clock(open_leadership: OpenLeadership) -> None:
    shared(lead := open_leadership(lease=30.0))
    mine = lead.acquire("mx1")
    assert mine is not None
    url = lead.url  # type: ignore[attr-defined]
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT expires_at - clock_timestamp() FROM leader").fetchone()
    assert row is not None and 25 < row[0].total_seconds() <= 30
