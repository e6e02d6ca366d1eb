"""Reading: the log through its filters, in position order, and the projections the
application asks for (keys and identities by name, state, due time)."""

from __future__ import annotations

from rotator.domain import events as ev
from rotator.domain.states import State
from rotator.ports import (
    EventStore,
    LogFilter,
    OverviewCounts,
    OverviewReader,
    ProjectionReader,
    StoreCounter,
    StreamReader,
)

from .builders import activated, added, at, generated, key_ids


def three_identities(store: EventStore) -> None:
    store.append([added("a.com"), added("b.com", 1), added("c.com", 2)], {})
    store.append([generated("ka", "a.com", 10), generated("kb", "b.com", 5)], {})
    store.append(
        [generated("kc", "c.com", 20), *activated("kc", "c.com", 21)],
        {},
    )
    store.append(
        [
            ev.PolicyChanged(
                at=at(30),
                actor="bob",
                identity="a.com",
                domain="a.com",
                policy="p2",
                previous="demo",
            )
        ],
        {},
    )


def positions(log: StreamReader, flt: LogFilter) -> list[int]:
    return [s.position for s in log.events(flt)]


def test_the_log_reads_through_every_filter(store: EventStore) -> None:
    three_identities(store)
    log: StreamReader = store
    assert positions(log, LogFilter()) == list(range(1, 11))
    assert positions(log, LogFilter(key_id="kc")) == [6, 7, 8, 9]
    assert positions(log, LogFilter(identity="a.com")) == [1, 4, 10]
    assert positions(log, LogFilter(domain="b.com")) == [2, 5]
    assert positions(log, LogFilter(identities=("a.com", "b.com"))) == [1, 2, 4, 5, 10]
    assert positions(log, LogFilter(types=("KeyGenerated",))) == [4, 5, 6]
    assert positions(log, LogFilter(types=("KeyActivated", "PolicyChanged"))) == [9, 10]
    assert positions(log, LogFilter(actor="bob")) == [10]
    assert positions(log, LogFilter(selector="s1.myesp", domain="c.com")) == [6, 7, 8, 9]
    assert positions(log, LogFilter(after_position=8)) == [9, 10]
    assert positions(log, LogFilter(after_position=2, limit=3)) == [3, 4, 5]
    assert positions(log, LogFilter(since=at(20), until=at(21))) == [6, 7, 8, 9]
    assert positions(log, LogFilter(key_id="nobody")) == []


def test_stream_versions_count_each_streams_events(store: EventStore) -> None:
    three_identities(store)
    assert store.stream_version("key:kc") == 4
    assert store.stream_version("identity:a.com") == 2
    assert store.stream_version("key:nobody") == 0


def test_the_projections_answer_by_name_state_and_time(store: EventStore) -> None:
    three_identities(store)
    read: ProjectionReader = store
    assert [k.key_id for k in read.list_keys()] == ["ka", "kb", "kc"]
    assert [k.key_id for k in read.list_keys("b.com")] == ["kb"]
    assert [k.key_id for k in read.list_keys(state=State.ACTIVE)] == ["kc"]
    assert [i.identity for i in read.identities()] == ["a.com", "b.com", "c.com"]
    ident = read.identity("c.com")
    assert ident is not None and ident.active_key == "kc"
    assert read.identity("nobody.com") is None
    assert read.key("nobody") is None
    assert read.live_key_ids() == {"ka", "kb", "kc"}
    assert read.count_keys("generated") == 2
    assert read.count_keys("generated", up_to=1) == 1
    assert read.selectors("a.com") == {"s1.myesp"}
    sender = read.identity_sending("c.com")
    assert sender is not None and sender.identity == "c.com"
    assert [i.identity for i in read.senders(2)] == ["a.com", "b.com"]
    assert read.companions("a.com") == []
    assert read.esp_customers("a.com") == []
    assert [k.key_id for k in read.watch_keys("", None)] == ["kc"]


def test_identities_page_by_name_from_a_cursor(store: EventStore) -> None:
    three_identities(store)
    read: ProjectionReader = store
    assert [i.identity for i in read.identity_page("", 2)] == ["a.com", "b.com"]
    store.append([added("bb.com", 31)], {})  # added between pages, after the cursor
    assert [i.identity for i in read.identity_page("b.com", 2)] == ["bb.com", "c.com"]
    assert [i.identity for i in read.identity_page("a.com", 1)] == ["b.com"]
    assert read.identity_page("c.com", 10) == []


def test_due_keys_come_in_due_order(store: EventStore) -> None:
    three_identities(store)
    assert [k.key_id for k in store.due_keys(at(15))] == ["kb", "ka"]
    assert [k.key_id for k in store.due_keys(at(15), limit=1)] == ["kb"]
    assert [k.key_id for k in store.due_keys(at(5))] == ["kb"]  # due exactly now
    assert store.due_keys(at(4)) == []
    assert store.next_due() == at(5)
    assert store.next_due(skip={"kb"}) == at(10)


def test_the_monitoring_counts_add_up_to_the_live_keys(store: EventStore) -> None:
    three_identities(store)
    counter: StoreCounter = store
    counts = counter.monitoring_counts()
    by_state: dict[str, int] = {}
    for c in counts.keys:
        by_state[c.state] = by_state.get(c.state, 0) + c.keys
    assert by_state == {"generated": 2, "active": 1}
    assert sum(i.identities for i in counts.identities) == 3
    assert counts.next_action == at(5)


def test_a_key_published_later_stays_in_its_stream(store: EventStore) -> None:
    three_identities(store)
    store.append([ev.KeyPublished(**key_ids("ka", "a.com", 40), server="ns")], {"key:ka": 1})
    key = store.key("ka")
    assert key is not None and key.state is State.PUBLISHED and key.version == 2


def test_the_overview_reads_aggregates_and_only_the_rows_with_a_problem(
    store: EventStore,
) -> None:
    three_identities(store)  # ka (a.com) and kb (b.com) generated, kc (c.com) active
    read: OverviewReader = store
    assert read.overview_counts() == OverviewCounts({"generated": 2, "active": 1}, 3)
    assert read.problem_keys() == [] and read.problem_identities() == []
    store.append(
        [
            ev.ActionFailed(**key_ids("kb", "b.com", 40), action="publish", error="REFUSED",
                            attempt=1, retry_at=at(50)),
            ev.DriftDetected(**key_ids("kc", "c.com", 41), server="ns2", answered="NXDOMAIN"),
            ev.RotationDeferred(at=at(42), identity="c.com", domain="c.com", retry_at=at(99),
                                notice="no free ping-pong slot"),
            ev.CustomerDnsBroken(at=at(43), identity="a.com", domain="a.com",
                                 problem="the delegation is gone"),
        ],
        {},
    )  # fmt: skip
    assert [k.key_id for k in read.problem_keys()] == ["kb", "kc"]  # list_keys order
    assert [i.identity for i in read.problem_identities()] == ["a.com", "c.com"]
    store.append([ev.IdentityRemoved(at=at(44), identity="a.com", domain="a.com")], {})
    # a removed identity's DNS problem stays in its row: the caller decides it is over
    assert [i.identity for i in read.problem_identities()] == ["a.com", "c.com"]
    assert read.overview_counts().identities == 2


def test_identities_are_searched_by_name_domain_or_customer(store: EventStore) -> None:
    three_identities(store)
    store.append(
        [ev.IdentityAdded(at=at(50), actor="alice", identity="d.org", domain="d.org",
                          zone="d.org", policy="demo", signing_pattern="*@d.org",
                          customer="Émile Ltd")],
        {},
    )  # fmt: skip
    read: OverviewReader = store
    found, total = read.search_identities(".com", 2)
    assert ([i.identity for i in found], total) == (["a.com", "b.com"], 3)
    found, total = read.search_identities("émile", 10)  # lower-cased as Python does
    assert ([i.identity for i in found], total) == (["d.org"], 1)
    assert read.search_identities("nowhere", 10) == ([], 0)


def test_batch_reads_give_what_reads_one_by_one_give(store: EventStore) -> None:
    three_identities(store)
    store.append([generated("ka2", "a.com", 40, selector="s2.myesp")], {})
    reader: ProjectionReader = store
    assert reader.keys_by_id(["kc", "ka", "nope", "ka"]) == {
        "ka": reader.key("ka"),
        "kc": reader.key("kc"),
    }
    assert reader.identities_named({"c.com", "a.com", "nobody.com"}) == {
        "a.com": reader.identity("a.com"),
        "c.com": reader.identity("c.com"),
    }
    of = reader.keys_of(["a.com", "b.com", "nobody.com"])
    assert [k.key_id for k in of["a.com"]] == ["ka", "ka2"]  # oldest first
    assert of["a.com"] == reader.list_keys("a.com")
    assert of["b.com"] == reader.list_keys("b.com")
    assert of["nobody.com"] == []
    assert reader.keys_by_id([]) == {} and reader.identities_named([]) == {}


def test_batch_reads_span_many_statements(store: EventStore) -> None:
    # more names than one statement binds (SQLite: 500 parameters a statement)
    names = [f"d{i:04d}.com" for i in range(1_100)]
    store.append([added(n) for n in names], {})
    store.append([generated(f"k{n}", n) for n in names], {})
    reader: ProjectionReader = store
    assert sorted(reader.identities_named(names)) == names
    assert sorted(reader.keys_by_id([f"k{n}" for n in names])) == sorted(f"k{n}" for n in names)
    assert all(len(keys) == 1 for keys in reader.keys_of(names).values())
