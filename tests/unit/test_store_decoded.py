"""States found again by their row (adapters/store/decoded.py): a row read again unchanged
is not decoded or MAC-checked twice, and a row edited behind rotator's back, its MAC kept,
is still refused on every read and by the append that would fold it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from rotator.adapters.store.decoded import Decoded
from rotator.adapters.store.seal import Sealer
from rotator.adapters.store.sqlite import SqliteEventStore
from rotator.domain import events as ev
from rotator.domain.errors import StoreError
from rotator.domain.model import KeyState

from ..contract.builders import activated, added, generated, key_ids

KEY = b"k" * 32


def edit(store: SqliteEventStore, statement: str) -> None:
    conn = sqlite3.connect(store.path, isolation_level=None)
    conn.execute(statement)
    conn.close()


@pytest.fixture
def store(tmp_path: Path) -> SqliteEventStore:
    s = SqliteEventStore(tmp_path / "rotator.db", sealer=Sealer(KEY, new=True))
    s.append([added("a.com"), generated("ka", "a.com", 1)], {})
    return s


def checks(store: SqliteEventStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = Sealer.check_row

    def counted(self: Sealer, table: str, row: dict[str, object], name: str) -> None:
        seen.append(name)
        real(self, table, row, name)

    monkeypatch.setattr(Sealer, "check_row", counted)
    return seen


def test_an_unchanged_row_is_checked_once(
    store: SqliteEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = checks(store, monkeypatch)
    first = store.key("ka")
    assert store.key("ka") is first and store.keys_by_id(["ka"])["ka"] is first
    # what an append wrote is known as written: reading it back checks nothing
    store.append(activated("ka", "a.com", 2)[:1], {"key:ka": 1})
    published = store.key("ka")
    assert published is not None and published.version == 2 and published is not first
    assert seen == []


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE keys SET attempts = 7 WHERE key_id = 'ka'",
        "UPDATE keys SET record_name = 'victim.example.' WHERE key_id = 'ka'",
    ],
)
def test_a_row_edited_with_its_mac_kept_is_refused_after_a_read(
    store: SqliteEventStore, statement: str
) -> None:
    assert store.key("ka") is not None  # read (and kept) before the edit
    edit(store, statement)
    with pytest.raises(StoreError, match="was not written by rotator"):
        store.key("ka")
    with pytest.raises(StoreError, match="was not written by rotator"):
        store.keys_by_id(["ka"])
    with pytest.raises(StoreError, match="was not written by rotator"):
        store.append([ev.KeyPublished(**key_ids("ka", "a.com", 3), server="ns")], {})


def test_an_edited_identity_is_refused_after_a_read(store: SqliteEventStore) -> None:
    assert store.identity("a.com") is not None
    edit(store, "UPDATE identities SET signing_pattern = '*@victim.com'")
    with pytest.raises(StoreError, match="was not written by rotator"):
        store.identities_named(["a.com"])


def test_the_oldest_rows_are_forgotten_past_the_limit() -> None:
    kept = Decoded(KeyState, limit=2)
    rows = [{c: f"{c}{i}" for c in kept.columns} for i in range(3)]
    states = [object() for _ in rows]
    for row, state in zip(rows, states, strict=True):
        kept.put(row, state)  # type: ignore[arg-type]
    assert len(kept) == 2
    assert kept.get(rows[0]) is None and kept.get(rows[2]) is states[2]
    # a row without a MAC (no audit key) is never kept
    kept.put({**rows[0], "mac": None}, states[0])  # type: ignore[arg-type]
    assert kept.get({**rows[0], "mac": None}) is None
