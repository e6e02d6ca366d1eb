"""The overview from aggregates and the rows with a problem: the page it renders is the one
rendered from every key and identity (the way it was built before), and building it reads
neither every key nor every identity."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from rotator.adapters.store.seal import Sealer, load_key
from rotator.adapters.store.sqlite import SqliteEventStore
from rotator.app.onboarding import CustomerRow
from rotator.app.queries import Queries
from rotator.domain import events as ev
from rotator.domain.model import IdentityState, KeyState
from rotator.domain.states import State
from rotator.ports import EventStore, OverviewCounts
from rotator.statuspage import build_overview, reading, render_overview

from ..contract.builders import added
from .conftest import MakeEnv, UnitEnv
from .fakes import demo_policy
from .test_statuspage import Held, Reader, rotate


class EveryRow:
    """The overview's reads answered from every key and identity: what the page read
    before it had aggregates, kept as the definition the aggregates must meet."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def overview_counts(self) -> OverviewCounts:
        keys = {s.value: self.store.count_keys(s.value) for s in State}
        live = sum(1 for i in self.store.identities() if i.retired_at is None)
        return OverviewCounts({s: n for s, n in keys.items() if n}, live)

    def problem_keys(self) -> list[KeyState]:
        return self.store.list_keys()

    def problem_identities(self) -> list[IdentityState]:
        return self.store.identities()

    def search_identities(self, text: str, limit: int) -> tuple[list[IdentityState], int]:
        found = [
            i
            for i in self.store.identities()
            if any(text in v.lower() for v in (i.identity, i.domain, i.customer) if v)
        ]
        return found[:limit], len(found)


class NoFullReads:
    """The store, refusing the reads that cost O(keys) or O(identities) in rows decoded."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        if name in ("list_keys", "identities", "count_keys", "identity_page"):
            raise AssertionError(f"the overview read every row ({name})")
        return getattr(self.store, name)


def readers(env: UnitEnv) -> tuple[Reader, Reader]:
    """(the overview's own reads, refusing full reads; the reference, reading every row)"""
    held = Held(env.app.safety.held())
    own = cast(EventStore, NoFullReads(env.store))
    every = cast(EventStore, EveryRow(env.store))
    return (
        Reader(own, Queries(own), held, env.app.webhooks),
        Reader(every, Queries(every), held, env.app.webhooks),
    )


def record(env: UnitEnv, event: ev.Event) -> None:
    env.ctx.recorder.append([event])


def identity_ids(domain: str, env: UnitEnv) -> dict[str, Any]:
    return {"at": env.clock.now(), "identity": domain, "domain": domain}


def fleet(make_env: MakeEnv) -> UnitEnv:
    """Every kind of problem the overview lists, beside keys in every state."""
    env = make_env(
        {"demo": demo_policy(retry={"park_after": 2})},
        esp_nameservers=("dkim1.esp.test", "dkim2.esp.test"),
    )
    rotate(env, "ok.example")  # destroyed, draining and active keys
    for name in ("drift.example", "broken.example", "late.example", "gone.example"):
        env.app.onboarding.add_identity(name, "demo")
    env.app.lifecycle.tick()
    key = env.key_of("drift.example", State.ACTIVE)
    record(env, ev.DriftDetected(at=env.clock.now(), key_id=key.key_id, identity=key.identity,
                                 domain=key.domain, selector=key.selector, server="ns2",
                                 answered="NXDOMAIN"))  # fmt: skip
    for name in ("broken.example", "gone.example"):
        record(env, ev.CustomerDnsBroken(**identity_ids(name, env), problem="CNAMEs gone"))
    record(env, ev.RotationDeferred(**identity_ids("late.example", env),
                                    retry_at=env.clock.now() + timedelta(days=1),
                                    notice="no free slot"))  # fmt: skip
    off = env.app.offboarding
    off.remove(off.plan(off.domain("gone.example"), True), True, "op", "left")
    env.app.onboarding.add_customers(
        [CustomerRow("Acme Corp", "acme.example", "ns-delegation", "demo")], "op"
    )
    for _ in range(3):  # verification fails twice: parked
        env.app.lifecycle.tick()
        env.clock.advance(10)
    env.app.onboarding.add_customers(
        [CustomerRow("Émile SARL", "emile.example", "ns-delegation", "demo")], "op"
    )
    env.app.lifecycle.tick()  # failing
    return env


@pytest.mark.parametrize("query", ["", "example", "ACME corp", "émile", "nowhere"])
def test_the_page_is_the_one_rendered_from_every_row(make_env: MakeEnv, query: str) -> None:
    env = fleet(make_env)
    own, every = readers(env)
    view = build_overview(own, env.clock.now(), query)
    assert view == build_overview(every, env.clock.now(), query)
    assert render_overview(view) == render_overview(build_overview(every, env.clock.now(), query))
    if not query:
        kinds = sorted({p.kind for p in view.problems})
        assert kinds == ["customer DNS", "drift", "failing", "notice", "parked"]
        assert "gone.example" not in {p.name for p in view.problems}  # removed: not a problem
        assert {"destroyed", "draining", "active"} <= {s for s, n in view.counts if n}


def test_matches_beyond_the_page_are_counted(
    make_env: MakeEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = fleet(make_env)
    monkeypatch.setattr(reading, "MAX_MATCHES", 2)
    own, every = readers(env)
    view = build_overview(own, env.clock.now(), ".example")
    assert len(view.matches) == 2 and view.more == 5  # 7 identities, the removed one too
    assert view == build_overview(every, env.clock.now(), ".example")


def test_the_problem_reads_walk_only_their_partial_indexes(env: UnitEnv) -> None:
    said: list[str] = []
    env.store.db.conn.set_trace_callback(said.append)
    env.store.problem_keys()
    env.store.problem_identities()
    env.store.overview_counts()
    env.store.db.conn.set_trace_callback(None)
    plans = {
        sql.split(" FROM ")[1].split()[0]: " ".join(
            str(step[3]) for step in env.store.db.execute(f"EXPLAIN QUERY PLAN {sql}")
        )
        for sql in said
        if sql.startswith("SELECT") and "GROUP BY" not in sql and "COUNT" not in sql
    }
    assert plans == {
        "keys": "SCAN keys USING INDEX keys_problem",  # in its order: no sort either
        "identities": "SCAN identities USING INDEX identities_problem",
    }
    (group,) = [sql for sql in said if "GROUP BY" in sql]
    (plan,) = env.store.db.execute(f"EXPLAIN QUERY PLAN {group}")
    assert plan[3] == "SCAN keys USING COVERING INDEX keys_state"  # no row is read


def test_adding_indexes_to_a_sealed_store_replays_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "audit.key"
    store = SqliteEventStore(tmp_path / "r.db", sealer=Sealer(load_key(key, create=True), True))
    store.append([added("a.com")], {})
    store.db.executescript(
        "DROP INDEX keys_problem; DROP INDEX identities_problem; "
        "DELETE FROM _sqlite_migrations WHERE name = 'm010_problem_indexes';"
    )
    store.close()

    def replay(self: SqliteEventStore, check_only: bool = False) -> list[str]:
        raise AssertionError("an index changes no row: nothing to re-seal")

    monkeypatch.setattr(SqliteEventStore, "rebuild", replay)
    store = SqliteEventStore(tmp_path / "r.db", sealer=Sealer(load_key(key, create=False)))
    indexes = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"keys_problem", "identities_problem"} <= indexes
    assert store.consistency_problem() is None
    store.close()
