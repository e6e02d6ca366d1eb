"""Big batches go into SQLite on a helper thread (store_insert.Feed): the log and the
projection must be exactly what small batches write, and a batch that fails anywhere,
in the fold or in an insert under way, must leave nothing behind."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rotator.adapters.store import insert as store_insert
from rotator.adapters.store.seal import Sealer
from rotator.adapters.store.sqlite import SqliteEventStore
from rotator.domain import events as ev
from rotator.domain.errors import ConcurrencyError, IllegalTransition
from tests.bench.bench_tick import fill

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
N = 1000  # identities: 5,000 events, more than OVERLAP_FROM


def dump(store: SqliteEventStore) -> list[Any]:
    return [
        store.db.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
        for t in ("events", "keys", "identities")
    ]


def test_a_big_batch_writes_what_small_batches_write(tmp_path: Path, monkeypatch: Any) -> None:
    assert 5 * N >= store_insert.OVERLAP_FROM
    big = SqliteEventStore(tmp_path / "big.db", sealer=Sealer(b"k" * 32))
    fill(big, N, 10, T0)  # one append of 5,000 events: the helper thread inserts
    threads = big._inserter._pool
    assert threads is not None  # the helper was used
    monkeypatch.setattr(store_insert, "OVERLAP_FROM", 10**9)
    small = SqliteEventStore(tmp_path / "small.db", sealer=Sealer(b"k" * 32))
    fill(small, N, 10, T0)
    assert small._inserter._pool is None
    assert dump(big) == dump(small)
    assert big.audit().ok


def events_for(n: int, start: int = 0) -> list[ev.Event]:
    out: list[ev.Event] = []
    for i in range(start, start + n):
        d = f"d{i}.example"
        out.append(
            ev.IdentityAdded(at=T0, identity=d, domain=d, zone=d, policy="demo", signing_pattern="")
        )
    return out


def test_a_batch_that_fails_in_the_fold_leaves_nothing(tmp_path: Path) -> None:
    store = SqliteEventStore(tmp_path / "s.db")
    batch = events_for(5000)
    batch.append(batch[-1])  # the same identity added twice: refused by the fold, at the end
    with pytest.raises(IllegalTransition, match="already exists"):
        store.append(batch, {})
    assert dump(store) == [[], [], []]
    store.append(events_for(5000), {})  # the connection is usable: nothing left half done
    assert store.db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 5000


def test_a_batch_whose_insert_fails_on_the_helper_thread_leaves_nothing(
    tmp_path: Path, monkeypatch: Any
) -> None:
    store = SqliteEventStore(tmp_path / "s.db")
    real = store_insert.Inserter.insert
    calls: list[int] = []

    def insert(self: store_insert.Inserter, into: str, *args: Any) -> None:
        calls.append(1)
        if len(calls) == 2:  # the second chunk, while the fold goes on
            raise sqlite3.IntegrityError("UNIQUE constraint failed: events.stream_id")
        real(self, into, *args)

    monkeypatch.setattr(store_insert.Inserter, "insert", insert)
    with pytest.raises(ConcurrencyError, match="UNIQUE"):
        store.append(events_for(9000), {})
    monkeypatch.setattr(store_insert.Inserter, "insert", real)
    assert dump(store) == [[], [], []]
    store.append(events_for(10), {})
    assert store.db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 10


def test_abandon_inserts_nothing_more() -> None:
    inserted: list[int] = []
    feed = store_insert.Feed(lambda rows: inserted.extend(r[0] for r in rows), None, 10)
    for i in range(5):
        feed.put((i,))
    feed.abandon()
    feed.finish()
    assert inserted == []


def test_batches_of_every_size_prepare_two_statement_shapes(tmp_path: Path) -> None:
    # SQLite keeps each prepared statement in the connection's cache: one shape per batch
    # size would hold hundreds of MB in a daemon whose batches vary
    conn = sqlite3.connect(tmp_path / "t.db")
    conn.execute("CREATE TABLE t (a, b)")
    texts: set[str] = set()

    class Recording:
        def __getattr__(self, name: str) -> Any:
            return getattr(conn, name)

        def execute(self, sql: str, params: Any = ()) -> Any:
            texts.add(sql)
            return conn.execute(sql, params)

        def executemany(self, sql: str, params: Any) -> Any:
            texts.add(sql)
            return conn.executemany(sql, params)

    inserter = store_insert.Inserter(Recording())  # type: ignore[arg-type]
    total = 0
    for size in (*range(1, 40), 499, 500, 501, 999, 1000, 1001, 2345):
        inserter.insert("INSERT INTO t", ("a", "b"), [(i, size) for i in range(size)])
        total += size
    assert len(texts) == 2
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == total
