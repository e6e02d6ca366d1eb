"""The signing set: which active keys sign for which senders, read in bulk and in sender
order, and whether the events since a position may have changed it (the domain says which
events do)."""

from __future__ import annotations

from rotator.domain import events as ev
from rotator.domain import signing
from rotator.ports import EventStore, SigningRow, SigningSetSource, sender_order

from .builders import activated, added, at, generated, key_ids


def position(store: EventStore) -> int:
    head = store.head()
    return head[0] if head else 0


def test_the_signing_set_is_every_active_key_under_its_pattern(store: EventStore) -> None:
    source: SigningSetSource = store
    assert list(source.signing_rows()) == []
    store.append([added("b.com"), added("a.com"), generated("kb", "b.com", 1)], {})
    store.append([generated("ka", "a.com", 1), generated("kx", "a.com", 1, "s2.myesp")], {})
    store.append([*activated("kb", "b.com", 2), *activated("ka", "a.com", 2)], {})
    rows = sorted(source.signing_rows(), key=sender_order)
    assert rows == [
        SigningRow("ka", "a.com", "s1.myesp", "ed25519", "a.com",
                   "s1.myesp._domainkey.a.com.", "*@a.com", False),
        SigningRow("kb", "b.com", "s1.myesp", "ed25519", "b.com",
                   "s1.myesp._domainkey.b.com.", "*@b.com", False),
    ]  # fmt: skip
    # the stream reads the same rows, already in sender order
    assert [SigningRow._make([*r[:7], bool(r[7])]) for r in source.signing_stream()] == rows
    source.check_signing(None, 1)()  # every row is the store's own
    assert isinstance(source.data_version(), int)


def test_only_the_domains_signing_events_count_as_changes(store: EventStore) -> None:
    source: SigningSetSource = store
    store.append([added("a.com"), generated("k1", "a.com", 1)], {})
    mark = position(store)
    assert not source.signing_changed_since(mark)
    assert not source.signing_set_changed_since(mark)
    store.append([ev.KeyPublished(**key_ids("k1", "a.com", 2), server="ns")], {})
    assert not source.signing_changed_since(mark)  # not a signing event
    assert not source.signing_set_changed_since(mark)
    steps: list[ev.Event] = [
        ev.KeyVerified(**key_ids("k1", "a.com", 3), results=(), activate_at=at(3)),
        ev.KeyActivated(**key_ids("k1", "a.com", 3), rotate_at=at(100)),
        ev.DrainStarted(**key_ids("k1", "a.com", 4), drain_until=at(50)),
        ev.RevocationPublished(**key_ids("k1", "a.com", 5), server="ns", record="v=DKIM1; p="),
        ev.KeyRevoked(**key_ids("k1", "a.com", 6), results=()),
        ev.KeyDestroyed(**key_ids("k1", "a.com", 7), tombstone_until=at(80)),
        ev.RotationRequested(at=at(8), identity="a.com", domain="a.com"),
        ev.IdentityRemoved(at=at(9), identity="a.com", domain="a.com"),
    ]
    for event in steps:
        mark = position(store)
        store.append([event], {})
        name = type(event).__name__
        assert source.signing_changed_since(mark) is (name in signing.SIGNING_EVENTS), name
        assert source.signing_set_changed_since(mark) is (name in signing.SIGNING_SET_EVENTS)
        assert not source.signing_changed_since(position(store))
