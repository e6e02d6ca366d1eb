"""The key store over sealed copies (keys.store = "database"), on SQLite: a key is sealed
before generate or write returns, the key directory is a copy materialized from the
database, destroy removes both, the pool seals a key when it is taken, and the whole
lifecycle runs on it. (On PostgreSQL, across two nodes: tests/integration.)"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from rotator.adapters.keys.envelope import Envelope, Kek
from rotator.adapters.keys.files import FsKeyStore, generate_pem
from rotator.adapters.keys.pool import FsKeyPool
from rotator.adapters.keys.sealed import SealedKeyStore
from rotator.adapters.keys.sealed_sqlite import SqliteSealedKeys
from rotator.app import Application
from rotator.domain.errors import ExternalError
from rotator.domain.states import State

from .conftest import UnitEnv

KEK = Kek(bytes(range(32)))


def node(tmp_path: Path, name: str, kek: Kek = KEK) -> SealedKeyStore:
    """One node's key store: its own key directory, the shared database."""
    return SealedKeyStore(
        FsKeyStore(tmp_path / name / "keys"),
        SqliteSealedKeys(tmp_path / "sealed-keys.db"),
        Envelope(kek),
    )


def opened(store: SealedKeyStore, key_id: str) -> bytes:
    blob = store.sealed.get(key_id)
    assert blob is not None
    return store.envelope.open(key_id, blob)


def test_a_generated_key_is_sealed_before_generate_returns(tmp_path: Path) -> None:
    a = node(tmp_path, "a")
    gen = a.generate("k1", "ed25519", 256)
    assert gen.path == a.path("k1") and a.key_file("k1") == str(gen.path)
    assert opened(a, "k1") == gen.path.read_bytes()
    assert gen.path.stat().st_mode & 0o777 == 0o600
    assert a.exists("k1") and a.stored_ids() == ["k1"]


def test_an_imported_key_is_sealed_too(tmp_path: Path) -> None:
    a = node(tmp_path, "a")
    pem = generate_pem("ed25519", 256)[0]
    a.write("k1", pem)
    assert opened(a, "k1") == pem == a.path("k1").read_bytes()


def test_a_key_the_directory_cannot_take_leaves_no_sealed_copy(tmp_path: Path) -> None:
    a = node(tmp_path, "a")
    a.dir.parent.mkdir(parents=True)
    a.dir.write_text("a file where the key directory should be")
    with pytest.raises(ExternalError):
        a.generate("k1", "ed25519", 256)
    assert a.sealed.ids() == []


def test_an_invalid_key_id_never_reaches_the_database(tmp_path: Path) -> None:
    a = node(tmp_path, "a")
    with pytest.raises(Exception, match="invalid key id"):
        a.write("../k1", b"x")
    assert a.sealed.ids() == []


def test_destroy_removes_the_row_and_the_file_and_is_idempotent(tmp_path: Path) -> None:
    a = node(tmp_path, "a")
    gen = a.generate("k1", "ed25519", 256)
    assert a.destroy("k1") is True
    assert not gen.path.exists() and a.sealed.get("k1") is None and not a.exists("k1")
    assert a.destroy("k1") is False
    assert a.stored_ids() == []


def test_destroy_many_removes_every_row_and_file(tmp_path: Path) -> None:
    a, b = node(tmp_path, "a"), node(tmp_path, "b")
    paths = [a.generate(f"k{i}", "ed25519", 256).path for i in range(5)]
    b.generate("other", "ed25519", 256)
    assert a.destroy_many(["k0", "k1", "k2", "k3", "k4", "gone", "other"]) == [
        True,
        True,
        True,
        True,
        True,
        False,
        True,
    ]
    assert not any(p.exists() for p in paths)
    assert a.sealed.ids() == [] and a.stored_ids() == []


def test_destroy_of_a_key_this_node_never_copied(tmp_path: Path) -> None:
    a, b = node(tmp_path, "a"), node(tmp_path, "b")
    a.generate("k1", "ed25519", 256)
    assert b.destroy("k1") is True  # the row went
    assert a.sealed.ids() == []


def test_stored_ids_are_the_rows_and_the_local_files(tmp_path: Path) -> None:
    a, b = node(tmp_path, "a"), node(tmp_path, "b")
    a.generate("k1", "ed25519", 256)
    b.files.write("orphan", generate_pem("ed25519", 256)[0])  # a file with no row
    assert b.stored_ids() == ["k1", "orphan"]


def test_another_node_materializes_the_keys_it_lacks(tmp_path: Path) -> None:
    a, b = node(tmp_path, "a"), node(tmp_path, "b")
    for key_id in ("k1", "k2", "k3"):
        a.generate(key_id, "ed25519", 256)
    done = b.materialize({"k1", "k2"})  # k3: not live yet (KeyGenerated not recorded)
    assert done.written == ["k1", "k2"] and not (done.sealed or done.wiped or done.missing)
    assert b.path("k1").read_bytes() == a.path("k1").read_bytes()
    assert b.path("k1").stat().st_mode & 0o777 == 0o600
    assert not b.path("k3").exists()
    again = b.materialize({"k1", "k2"})
    assert again.written == [] and again.wiped == []


def test_materialize_wipes_the_copy_of_a_key_destroyed_elsewhere(tmp_path: Path) -> None:
    a, b = node(tmp_path, "a"), node(tmp_path, "b")
    a.generate("k1", "ed25519", 256)
    a.generate("k2", "ed25519", 256)
    b.materialize({"k1", "k2"})
    a.destroy("k1")
    done = b.materialize({"k2"})
    assert done.wiped == ["k1"] and not b.path("k1").exists() and b.path("k2").exists()


def test_materialize_seals_a_live_key_only_the_directory_holds(tmp_path: Path) -> None:
    # a key directory from before keys.store = "database"
    a = node(tmp_path, "a")
    pem = generate_pem("ed25519", 256)[0]
    a.files.write("old", pem)
    done = a.materialize({"old"})
    assert done.sealed == ["old"] and opened(a, "old") == pem


def test_materialize_reports_keys_held_nowhere_and_rows_it_cannot_open(tmp_path: Path) -> None:
    a = node(tmp_path, "a")
    a.generate("k1", "ed25519", 256)
    stranger = node(tmp_path, "c", Kek(os.urandom(32)))
    done = stranger.materialize({"k1", "gone"})
    assert done.missing == ["gone"]
    assert list(done.unreadable) == ["k1"] and "wrapped by KEK" in done.unreadable["k1"]
    assert not stranger.path("k1").exists()


def test_a_pooled_key_is_sealed_when_it_is_taken_not_before(tmp_path: Path) -> None:
    a = node(tmp_path, "a")
    pool = FsKeyPool(a.files, seal=a.seal)
    for key_id in ("p1", "p2", "p3"):
        pool.add(key_id, "ed25519", 256)
    assert a.sealed.ids() == []  # pooled keys stay local
    taken = pool.take("ed25519", 256, 2)
    assert [k for k, _ in taken] == ["p1", "p2"] == a.sealed.ids()
    for key_id, gen in taken:
        assert opened(a, key_id) == gen.path.read_bytes()
    assert list(pool.inventory()) == ["p3"]


def test_a_pool_whose_database_is_away_keeps_its_keys(tmp_path: Path) -> None:
    a = node(tmp_path, "a")

    def away(key_id: str, pem: bytes) -> None:
        raise ExternalError("key database: connection refused")

    pool = FsKeyPool(a.files, seal=away)
    pool.add("p1", "ed25519", 256)
    assert pool.take("ed25519", 256, 1) == []
    assert list(pool.inventory()) == ["p1"] and not a.path("p1").exists()


def test_a_worker_process_seals_what_it_generates(tmp_path: Path) -> None:
    # generation runs in spawned workers, handed the key store with each task
    a = node(tmp_path, "a")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as workers:
        gens = list(workers.map(a.generate, ["w1", "w2"], ["ed25519"] * 2, [256] * 2))
    assert a.sealed.ids() == ["w1", "w2"]
    assert opened(a, "w1") == gens[0].path.read_bytes()


# --- the whole lifecycle on it --------------------------------------------------------------


def sealed_env(env: UnitEnv, tmp_path: Path) -> SealedKeyStore:
    store = SealedKeyStore(env.keystore, SqliteSealedKeys(tmp_path / "sealed.db"), Envelope(KEK))
    env.ctx.keystore = store
    return store


def test_the_lifecycle_seals_activates_and_destroys(env: UnitEnv, tmp_path: Path) -> None:
    store = sealed_env(env, tmp_path)
    env.app.onboarding.add_identity("example.com", "demo")
    env.app.lifecycle.tick()
    (first,) = env.store.list_keys()
    assert first.state is State.ACTIVE and store.sealed.ids() == [first.key_id]
    env.clock.advance(61)  # rotated
    env.app.lifecycle.tick()
    env.clock.advance(31)  # drained
    env.app.lifecycle.tick()
    assert env.key(first.key_id).state is State.DESTROYED
    assert first.key_id not in store.sealed.ids()
    assert not store.path(first.key_id).exists()


def test_a_node_starting_up_materializes_the_live_keys(env: UnitEnv, tmp_path: Path) -> None:
    sealed_env(env, tmp_path)
    env.app.onboarding.add_identity("example.com", "demo")
    env.app.lifecycle.tick()
    (key,) = env.store.list_keys()
    other = SealedKeyStore(
        FsKeyStore(tmp_path / "node-b" / "keys"),
        SqliteSealedKeys(tmp_path / "sealed.db"),
        Envelope(KEK),
    )
    env.ctx.keystore = other
    Application(env.ctx).lifecycle.startup()
    assert other.path(key.key_id).read_bytes() == env.keystore.path(key.key_id).read_bytes()
    assert other.sealed.ids() == [key.key_id]  # nothing wiped: the key is live
