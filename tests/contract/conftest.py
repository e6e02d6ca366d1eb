"""The store contract, run against every store implementation: each factory opens a store
on one test's database (a second call opens a second connection to the same database).
Adding an implementation is one line in STORES."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rotator.adapters.store.sqlite import SqliteEventStore
from rotator.ports import EventStore

# where: this test's own directory, to keep the database (or name it) in
StoreFactory = Callable[[Path], EventStore]


def sqlite_store(where: Path) -> EventStore:
    return SqliteEventStore(where / "rotator.db")


STORES = [pytest.param(sqlite_store, id="sqlite")]

OpenStore = Callable[[], EventStore]


@pytest.fixture(params=STORES)
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    factory: StoreFactory = request.param
    opened: list[EventStore] = []

    def open_() -> EventStore:
        opened.append(factory(tmp_path))
        return opened[-1]

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: OpenStore) -> EventStore:
    return open_store()
