"""The audit chain: every event linked to the one before, verified from the start; the
projection replayed from the log; the head to keep elsewhere."""

from __future__ import annotations

import itertools

from rotator.adapters.store.rows import GENESIS
from rotator.domain.states import State
from rotator.ports import AuditLog, AuditReport, EventStore

from .builders import activated, added, five_events, generated


def test_prev_hash_chain(store: EventStore) -> None:
    five_events(store)
    rows = list(store.events())
    assert rows[0].prev_hash == GENESIS
    for prev, cur in itertools.pairwise(rows):
        assert cur.prev_hash == prev.hash
    assert len({r.hash for r in rows}) == 5
    assert store.verify_chain() == (5, None)


def test_empty_log_verifies(store: EventStore) -> None:
    assert store.verify_chain() == (0, None)


def test_the_head_is_the_newest_event(store: EventStore) -> None:
    audit: AuditLog = store
    assert audit.head() is None
    five_events(store)
    last = list(store.events())[-1]
    assert audit.head() == (last.position, last.hash)


def test_an_intact_log_audits_clean(store: EventStore) -> None:
    assert store.audit().ok
    five_events(store)
    report = store.audit()
    assert report == AuditReport(events=5)
    assert report.ok
    assert store.consistency_problem() is None
    # opened without an audit key or an anchor: nothing else to check against
    assert not store.keyed()
    assert store.anchored() is None


def test_rebuild_replays_the_log_into_the_same_projection(store: EventStore) -> None:
    store.append([added("a.com"), added("b.com"), generated("k1", "a.com", 1)], {})
    store.append(activated("k1", "a.com", 2), {"key:k1": 1})
    keys, idents = store.list_keys(), store.identities()
    assert store.rebuild(check_only=True) == []
    assert store.rebuild() == []
    assert store.list_keys() == keys
    assert store.identities() == idents
    key = store.key("k1")
    assert key is not None and key.state is State.ACTIVE
    assert store.verify_chain() == (6, None)
    assert store.consistency_problem() is None
