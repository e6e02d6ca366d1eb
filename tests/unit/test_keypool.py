"""The key pool with real key files and a real store: filled ahead of need and recorded,
taken by new keys (which then sign and publish the pooled key's public half), discarded by
an emergency over every key unless the key store is intact, converged after a crash."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest

from rotator.adapters.keys.pool import FsKeyPool
from rotator.app import Scope, generation
from rotator.domain.errors import ConcurrencyError, PolicyError
from rotator.domain.record import parse_record
from rotator.domain.states import State
from rotator.ports import LogFilter

from .conftest import UnitEnv
from .fakes import demo_policy

KIND = ("ed25519", 256)


def pooled(env: UnitEnv, size: int = 5) -> FsKeyPool:
    pool = FsKeyPool(env.keystore)
    env.ctx.keypool = pool
    env.ctx.pool_sizes = {KIND: size}
    return pool


def of_type(env: UnitEnv, name: str) -> list[Any]:
    return [s.event for s in env.store.events(LogFilter(types=(name,)))]


def test_a_policy_sets_its_pool_size() -> None:
    assert demo_policy(key={"pool": 100}).pool == 100
    with pytest.raises(PolicyError, match=r"\[key\]\.pool: -1: give a number of keys"):
        demo_policy(key={"pool": -1})


def test_the_pool_fills_up_to_its_size_and_records_each_key(env: UnitEnv) -> None:
    pool = pooled(env)
    assert env.app.keypool.missing() == {KIND: 5}
    assert env.app.keypool.refill(budget_s=30) == 5
    assert env.app.keypool.refill(budget_s=30) == 0  # full
    added = of_type(env, "PoolKeyAdded")
    assert sorted(e.key_id for e in added) == sorted(pool.inventory())
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in pool.dir.iterdir())


def test_a_new_key_is_taken_from_the_pool(env: UnitEnv) -> None:
    pool = pooled(env, size=3)
    env.app.keypool.refill(budget_s=30)
    before = set(pool.inventory())
    env.app.onboarding.add_identity("example.com", "demo")
    env.app.lifecycle.tick()
    key = env.key_of("example.com", State.ACTIVE)
    assert key.key_id in before and key.key_id not in pool.inventory()
    (generated,) = [e for e in of_type(env, "KeyGenerated") if e.key_id == key.key_id]
    assert generated.pooled
    # the record published is the pooled key's own public half
    pem = env.keystore.path(key.key_id).read_bytes()
    _, _, material = env.keystore.describe(pem)
    published = parse_record(env.dns.records[key.record_name])["p"]
    assert base64.b64decode(published) == material
    added = next(e for e in of_type(env, "PoolKeyAdded") if e.key_id == key.key_id)
    assert added.fingerprint == hashlib.sha256(material).hexdigest()


def test_an_emergency_over_every_key_discards_the_pool(env: UnitEnv) -> None:
    pool = pooled(env, size=2)
    env.app.keypool.refill(budget_s=30)
    env.app.onboarding.add_identity("example.com", "demo")
    env.app.lifecycle.tick()
    env.app.keypool.refill(budget_s=30)
    ids = set(pool.inventory())
    assert len(ids) == 2
    plan = env.app.emergency.plan(Scope(everything=True))
    env.app.emergency.declare(plan, "carol", "key store stolen")
    assert pool.inventory() == {}
    discarded = of_type(env, "PoolKeyDiscarded")
    assert {e.key_id for e in discarded} == ids
    assert {(e.actor, e.reason) for e in discarded} == {("carol", "key store stolen")}
    env.app.lifecycle.tick()  # the replacement is a fresh key, not a pooled one
    new = env.key_of("example.com", State.ACTIVE)
    assert new.key_id not in ids


def test_a_keystore_intact_emergency_switches_to_pooled_keys(env: UnitEnv) -> None:
    pool = pooled(env, size=3)
    for d in ("a.example", "b.example"):
        env.app.onboarding.add_identity(d, "demo")
    env.app.lifecycle.tick()
    env.app.keypool.refill(budget_s=30)
    ids = set(pool.inventory())
    plan = env.app.emergency.plan(Scope(everything=True, keystore_intact=True))
    assert plan.scope.describe() == "all keys (key store intact)"
    env.app.emergency.declare(plan, "carol", "mx1 breached")
    assert of_type(env, "PoolKeyDiscarded") == []
    env.app.lifecycle.tick()
    news = {env.key_of(d, State.ACTIVE).key_id for d in ("a.example", "b.example")}
    assert news <= ids and len(pool.inventory()) == 1


def test_start_up_wipes_pooled_keys_that_were_never_recorded(env: UnitEnv) -> None:
    pool = pooled(env)
    env.app.keypool.refill(budget_s=30)
    recorded = set(pool.inventory())
    pool.add("unrecorded1", *KIND)  # a crash between writing a pooled key and its event
    assert env.app.keypool.converge() == 1
    assert set(pool.inventory()) == recorded


def test_status_shows_the_pool_and_the_flag_needs_all(tmp_path: Path) -> None:
    from .clirun import ok, refused, write_config

    cfg = write_config(tmp_path)
    policies = tmp_path / "policies"
    policies.mkdir(mode=0o755)
    (policies / "pooled.toml").write_text('[key]\nalgorithm = "ed25519"\npool = 4\n')
    (policies / "pooled.toml").chmod(0o644)
    text = cfg.read_text().replace(
        next(ln for ln in cfg.read_text().splitlines() if ln.startswith("policy_dir")),
        f'policy_dir = "{policies}"',
    )
    cfg.write_text(text)
    ok(cfg, "domain", "add", "example.com", "--policy", "pooled")
    assert "key pool: ed25519-256 0 of 4" in ok(cfg, "status").output
    line = refused(cfg, "rotate", "--emergency", "example.com", "--keystore-intact",
                   "--reason", "x")  # fmt: skip
    assert "--keystore-intact only changes --all" in line


def seven_due(env: UnitEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full pool of 7 and 7 domains due their first key; pooled keys in chunks of 2, 3."""
    monkeypatch.setattr(generation, "POOL_FIRST", 2)
    monkeypatch.setattr(generation, "POOL_CHUNK", 3)
    pooled(env, size=7)
    env.app.keypool.refill(budget_s=30)
    for i in range(7):
        env.app.onboarding.add_identity(f"d{i}.example.com", "demo")


def test_pooled_keys_go_out_a_chunk_at_a_time_the_first_small(
    env: UnitEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each chunk of pooled keys is recorded and published before the next is taken, so
    the first records are on their way at once; verification waits for the last chunk."""
    seven_due(env, monkeypatch)
    env.app.lifecycle.tick()
    kinds = ("KeyGenerated", "KeyPublished", "KeyVerified")
    log = [type(s.event).__name__ for s in env.store.events(LogFilter(types=kinds))]
    gen, pub = "KeyGenerated", "KeyPublished"
    assert log[:14] == [gen] * 2 + [pub] * 2 + [gen] * 3 + [pub] * 3 + [gen] * 2 + [pub] * 2
    assert log[14:] == ["KeyVerified"] * 7
    assert len(env.store.list_keys(state=State.ACTIVE)) == 7


def test_a_backend_that_takes_a_batch_as_one_change_gets_the_pooled_keys_in_one(
    env: UnitEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.dns.rounds = False
    seven_due(env, monkeypatch)
    updates = env.dns.updates
    env.app.lifecycle.tick()
    kinds = ("KeyGenerated", "KeyPublished")
    log = [type(s.event).__name__ for s in env.store.events(LogFilter(types=kinds))]
    assert log == ["KeyGenerated"] * 7 + ["KeyPublished"] * 7
    assert env.dns.updates - updates == 7  # one batch: each of the 7 zones once


def test_a_refused_chunk_leaves_no_key_unrecorded(
    env: UnitEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append refused midway (another writer): the keys of that chunk and of the ones
    after it, taken from the pool but never recorded, are wiped; the recorded ones stay."""
    seven_due(env, monkeypatch)
    real = env.ctx.recorder.append
    chunks: list[list[str]] = []

    def append(events: Any, *args: Any, **kwargs: Any) -> Any:
        if type(events[0]).__name__ == "KeyGenerated":
            chunks.append([e.key_id for e in events])
            if len(chunks) == 2:  # another writer got there first
                raise ConcurrencyError("moved; retry")
        return real(events, *args, **kwargs)

    monkeypatch.setattr(env.ctx.recorder, "append", append)
    with pytest.raises(ConcurrencyError):
        env.app.lifecycle.tick()
    first, refused = chunks
    assert len(first) == 2 and len(refused) == 3
    recorded = {e.key_id for e in of_type(env, "KeyGenerated")}
    assert recorded == set(first)
    assert set(env.keystore.stored_ids()) == recorded  # the 5 others wiped


def test_an_emergency_records_its_pooled_replacements_before_the_revocations_leave(
    env: UnitEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replacements are recorded first, then the revocations and the replacements go
    to DNS one right after the other (revocations first), so that a secondary takes both
    in one round."""
    pooled(env, size=3)
    env.app.keypool.refill(budget_s=30)
    for i in range(3):
        env.app.onboarding.add_identity(f"d{i}.example.com", "demo")
    env.app.lifecycle.tick()
    env.app.keypool.refill(budget_s=30)
    before = env.events()
    sent: list[bool] = []  # each change sent: whether it is a revocation
    real = env.dns.apply

    def apply(zone: str, changes: Any) -> str:
        sent.extend(c.text == "v=DKIM1; p=" for c in changes)
        return real(zone, changes)

    monkeypatch.setattr(env.dns, "apply", apply)
    plan = env.app.emergency.plan(Scope(everything=True, keystore_intact=True))
    env.app.emergency.declare(plan, "op", "leak")
    env.app.lifecycle.tick()
    kinds = ("KeyGenerated", "RevocationPublished", "KeyPublished")
    log = [
        type(s.event).__name__
        for s in env.store.events(LogFilter(types=kinds))
        if s.position > before
    ]
    assert log == ["KeyGenerated"] * 3 + ["RevocationPublished"] * 3 + ["KeyPublished"] * 3
    assert sent[:6] == [True] * 3 + [False] * 3
    assert len(env.store.list_keys(state=State.ACTIVE)) == 3
    assert all(e.pooled for e in of_type(env, "KeyGenerated"))
