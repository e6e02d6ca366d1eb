"""The store's per-request lookups on identities search an index: at a million identities
a table scan is seconds per onboarded customer (issue: creating customers over the API at
300 per second)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rotator.adapters.store.sqlite import SqliteEventStore

from ..contract.builders import added


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteEventStore]:
    s = SqliteEventStore(tmp_path / "rotator.db")
    s.append([added(f"d{i}.example") for i in range(50)], {})
    yield s
    s.close()


def plans(store: SqliteEventStore, lookup: Callable[[], Any]) -> list[str]:
    """The query plan of every statement on identities that `lookup` runs."""
    statements: list[str] = []
    store.db.conn.set_trace_callback(statements.append)
    try:
        lookup()
    finally:
        store.db.conn.set_trace_callback(None)
    out = []
    for sql in statements:
        if "FROM identities" in sql:
            rows = store.db.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
            out.append(" ".join(str(row[-1]) for row in rows))
    return out


@pytest.mark.parametrize(
    ("what", "lookup"),
    [
        ("the owner of a sending domain", lambda s: s.identity_sending("new.example")),
        ("a *@*. pattern above it", lambda s: s.identity_covering("a.new.example")),
        ("the customers an ESP identity signs for", lambda s: s.esp_customers("esp.example")),
    ],
)
def test_onboarding_lookups_search_an_index(
    store: SqliteEventStore, what: str, lookup: Callable[[SqliteEventStore], Any]
) -> None:
    found = plans(store, lambda: lookup(store))
    assert found, what
    for plan in found:
        assert "SEARCH identities USING INDEX" in plan and "SCAN identities" not in plan, (
            what,
            plan,
        )
