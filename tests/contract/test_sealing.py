"""The keyed audit trail and the database around it, on every store: MACs and the anchor
written and checked, writers in parallel keeping one chain, a read-only connection that
writes nothing, and the signing set's MACs checked in worker processes."""

from __future__ import annotations

import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from rotator.adapters.store import signing as store_signing
from rotator.adapters.store.anchor import Anchor
from rotator.adapters.store.seal import Sealer
from rotator.domain import events as ev
from rotator.domain.errors import ConcurrencyError, StoreError

from .builders import activated, added, at, five_events, generated
from .conftest import OpenStore

KEY = b"k" * 32


def test_a_sealed_log_and_its_anchor_audit_clean(open_store: OpenStore, tmp_path: Path) -> None:
    anchor = Anchor(tmp_path / "anchor.log")
    store = open_store(sealer=Sealer(KEY, new=True), anchor=anchor)
    five_events(store)
    store.append([added("d.com", 5), generated("kd", "d.com", 5)], {})
    store.append(activated("kd", "d.com", 6), {"key:kd": 1})
    report = store.audit()
    assert report.ok, report
    assert (report.events, report.sealed) == (10, 10)
    assert store.consistency_problem() is None
    assert anchor.last() == store.head()
    assert store.anchored() == str(anchor.path)
    assert store.rebuild(check_only=True) == []
    assert store.rebuild() == []
    assert store.audit().ok
    # another connection with the same key reads and checks the same rows
    reader = open_store(readonly=True, sealer=Sealer(KEY), anchor=anchor)
    assert reader.list_keys() == store.list_keys()
    assert reader.audit().ok
    # ... and with another key, every MAC is wrong
    stranger = open_store(readonly=True, sealer=Sealer(b"x" * 32), anchor=anchor)
    bad = stranger.audit()
    assert not bad.ok and len(bad.bad_macs) >= 10
    with pytest.raises(StoreError, match="was not written by rotator"):
        stranger.list_keys()


def test_a_log_cut_short_is_seen_by_its_anchor(open_store: OpenStore, tmp_path: Path) -> None:
    anchor, sealer = Anchor(tmp_path / "anchor.log"), Sealer(KEY, new=True)
    store = open_store(sealer=sealer, anchor=anchor)
    five_events(store)
    with anchor.locked(sealer) as writer:  # as if a later transaction had been lost
        writer.append(6, "ab" * 32)
    assert store.consistency_problem() == (
        f"the log ends at event 5 but the anchor {anchor.path} has event 6: the log was cut "
        "off or rolled back"
    )
    assert store.audit().anchor is not None


def test_writers_in_parallel_keep_one_total_order(open_store: OpenStore) -> None:
    store = open_store()
    store.append([added("shared.com")], {})
    writers = [open_store() for _ in range(4)]
    conflicts = []

    def write(n: int) -> None:
        w = writers[n]
        for i in range(15):
            w.append([added(f"d{n}-{i}.com", i)], {f"identity:d{n}-{i}.com": 0})
            version = w.stream_version("identity:shared.com")
            event = ev.RotationRequested(at=at(i), identity="shared.com", domain="shared.com")
            try:
                w.append([event], {"identity:shared.com": version})
            except ConcurrencyError:
                conflicts.append(n)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = list(store.events())
    assert [s.position for s in stored] == list(range(1, len(stored) + 1))
    assert store.verify_chain() == (len(stored), None)
    shared = [s.version for s in stored if s.stream_id == "identity:shared.com"]
    assert shared == list(range(1, len(shared) + 1))  # no version twice
    assert len(shared) - 1 + len(conflicts) == 60
    assert store.audit().ok
    assert store.consistency_problem() is None


def test_a_read_only_store_writes_nothing(open_store: OpenStore) -> None:
    writer = open_store()
    five_events(writer)
    reader = open_store(readonly=True)
    assert reader.info()["events"] == 5
    with pytest.raises(StoreError, match="read-only"):
        reader.append([added("x.com", 9)], {})
    with pytest.raises(StoreError, match="read-only"):
        reader.rebuild()
    assert reader.rebuild(check_only=True) == []
    assert writer.info()["events"] == 5


def test_another_connections_write_moves_the_data_version(open_store: OpenStore) -> None:
    a, b = open_store(), open_store()
    a.append([added("a.com")], {})
    before = a.data_version()
    assert a.data_version() == before  # nothing written meanwhile
    b.append([added("b.com", 1)], {})
    assert a.data_version() != before


def test_the_signing_set_is_checked_in_worker_processes(
    open_store: OpenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_signing, "PARALLEL_FROM", 0)  # workers even for a few rows
    store = open_store(sealer=Sealer(KEY, new=True))
    names = [f"d{i:02}.com" for i in range(12)]
    store.append([added(d) for d in names], {})
    store.append([generated(f"k{d}", d, 1) for d in names], {})
    store.append([e for d in names for e in activated(f"k{d}", d, 2)], {})
    with ProcessPoolExecutor(2) as pool:
        store.check_signing(pool, 2)()  # every part sound
    assert len(list(store.signing_rows())) == 12
