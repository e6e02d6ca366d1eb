"""The store contract, run against every store implementation: each factory takes the
test's request (for the fixtures it needs: a directory, a database of its own) and gives
the call that opens a store on that test's database (a second call opens a second
connection to the same database; keywords: readonly, sealer, anchor). Adding an
implementation is one line in STORES."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rotator.adapters.store.postgres.store import PostgresEventStore
from rotator.adapters.store.sqlite import SqliteEventStore
from rotator.ports import EventStore

OpenStore = Callable[..., EventStore]
StoreFactory = Callable[[pytest.FixtureRequest], OpenStore]


def sqlite_store(request: pytest.FixtureRequest) -> OpenStore:
    path = request.getfixturevalue("tmp_path") / "rotator.db"
    return lambda **kw: SqliteEventStore(path, **kw)


def postgres_store(request: pytest.FixtureRequest) -> OpenStore:
    url: str = request.getfixturevalue("postgres_url")
    return lambda **kw: PostgresEventStore(url, **kw)


STORES = [
    pytest.param(sqlite_store, id="sqlite"),
    pytest.param(postgres_store, id="postgres"),
]


@pytest.fixture(params=STORES)
def open_store(request: pytest.FixtureRequest) -> Iterator[OpenStore]:
    factory: StoreFactory = request.param
    opener = factory(request)
    opened: list[EventStore] = []

    def open_(**kw: Any) -> EventStore:
        opened.append(opener(**kw))
        return opened[-1]

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: OpenStore) -> EventStore:
    return open_store()
