"""Appending: positions and stream versions, optimistic concurrency, atomic batches, the
states the fold computed, and a second connection to the same log."""

from __future__ import annotations

import pytest

from rotator.domain import events as ev
from rotator.domain.errors import ConcurrencyError, IllegalTransition
from rotator.domain.states import Action, State
from rotator.ports import EventAppender, EventStore, StreamReader

from .builders import activated, added, at, generated, key_ids
from .conftest import OpenStore


def events_in(log: StreamReader) -> int:
    return int(log.info()["events"])


def test_append_assigns_positions_and_stream_versions(store: EventStore) -> None:
    first = store.append([added("a.com"), added("b.com")], {})
    assert [(s.position, s.stream_id, s.version) for s in first] == [
        (1, "identity:a.com", 1),
        (2, "identity:b.com", 1),
    ]
    batch = [
        generated("k1", "a.com", 1),
        ev.KeyPublished(**key_ids("k1", "a.com", 2), server="ns"),
        ev.RotationRequested(at=at(3), identity="b.com", domain="b.com"),
    ]
    second = store.append(batch, {"key:k1": 0, "identity:b.com": 1})
    assert [(s.position, s.stream_id, s.version) for s in second] == [
        (3, "key:k1", 1),
        (4, "key:k1", 2),
        (5, "identity:b.com", 2),
    ]
    assert store.stream_version("key:k1") == 2
    assert store.stream_version("identity:a.com") == 1
    assert store.stream_version("identity:nobody") == 0
    assert [s.position for s in store.events()] == [1, 2, 3, 4, 5]
    assert store.info()["events"] == 5
    # the events read back are the events written
    assert [s.event for s in store.events()] == [*[s.event for s in first], *batch]
    # Appended is a list of the stored events (the contract types it by what it does)
    assert store.append([], {}) == []  # type: ignore[comparison-overlap]


def test_projections_follow_appends(store: EventStore) -> None:
    store.append([added("a.com"), generated("k1", "a.com", 1)], {})
    key = store.key("k1")
    assert key is not None and key.state is State.GENERATED
    assert key.next_action is Action.PUBLISH
    ident = store.identity("a.com")
    assert ident is not None and ident.pending_key == "k1"
    assert store.selectors("a.com") == {"s1.myesp"}


def test_append_returns_the_states_it_folded(store: EventStore) -> None:
    appended = store.append([added("a.com"), generated("k1", "a.com", 1)], {})
    assert len(appended) == 2
    assert appended.keys["k1"].state is State.GENERATED
    assert appended.identities["a.com"].pending_key == "k1"
    appended = store.append(activated("k1", "a.com", 2), {"key:k1": 1})
    assert appended.keys["k1"].state is State.ACTIVE
    assert appended.keys["k1"] == store.key("k1")


def test_a_stream_that_moved_refuses_the_whole_batch(store: EventStore) -> None:
    store.append([added("a.com")], {"identity:a.com": 0})
    with pytest.raises(ConcurrencyError, match=r"identity:a.com is at version 1, expected 0"):
        store.append(
            [added("b.com"), ev.RotationRequested(at=at(1), identity="a.com", domain="a.com")],
            {"identity:b.com": 0, "identity:a.com": 0},
        )
    assert events_in(store) == 1
    assert store.identity("b.com") is None
    assert store.stream_version("identity:b.com") == 0


def test_a_stream_opened_twice_is_a_conflict(store: EventStore) -> None:
    store.append([added("a.com")], {})
    with pytest.raises(ConcurrencyError):
        store.append([added("a.com", 1)], {"identity:a.com": 0})
    assert events_in(store) == 1


def test_an_event_that_does_not_apply_writes_nothing_of_its_batch(store: EventStore) -> None:
    store.append([added("a.com")], {})
    batch: list[ev.Event] = [
        generated("k1", "a.com", 1),
        ev.KeyActivated(**key_ids("k1", "a.com", 2), rotate_at=at(100)),  # not verified
    ]
    with pytest.raises(IllegalTransition):
        store.append(batch, {})
    assert events_in(store) == 1
    assert store.key("k1") is None
    assert store.stream_version("key:k1") == 0
    store.append(batch[:1], {"key:k1": 0})  # still usable
    assert events_in(store) == 2


def test_a_selector_is_used_once_per_domain(store: EventStore) -> None:
    store.append([added("a.com"), generated("k1", "a.com", 1, selector="dup.myesp")], {})
    with pytest.raises(IllegalTransition, match="selector already used"):
        store.append([generated("k2", "a.com", 2, selector="dup.myesp")], {"key:k2": 0})
    assert store.key("k2") is None
    assert events_in(store) == 2


def test_an_event_is_recorded_no_earlier_than_the_one_before(store: EventStore) -> None:
    appender: EventAppender = store
    appender.append([added("a.com", 10)], {})
    [stored] = appender.append([added("b.com", 5)], {})
    assert stored.event.at == at(10)


def test_second_store_sees_first_stores_writes(open_store: OpenStore) -> None:
    a, b = open_store(), open_store()
    try:
        a.append([added("a.com")], {"identity:a.com": 0})
        with pytest.raises(ConcurrencyError):
            b.append([added("a.com")], {"identity:a.com": 0})
        b.append([ev.RotationRequested(at=at(1), identity="a.com", domain="a.com")], {})
        assert [s.position for s in a.events()] == [1, 2]
        assert a.verify_chain() == (2, None)
    finally:
        a.close()
        b.close()
