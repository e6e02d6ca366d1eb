"""The SQLite event store: append-only hash-chained log, optimistic concurrency, atomic
batches, projections (rebuild), the due-key query, and no private key material in the log."""

from __future__ import annotations

import base64
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from rotator.adapters.keys.files import FsKeyStore
from rotator.adapters.store.sqlite import SqliteEventStore
from rotator.app import Application, Context
from rotator.domain import events as ev
from rotator.domain.errors import ConcurrencyError, IllegalTransition, NotFound
from rotator.domain.states import State

from ..contract.builders import T0, added, at, five_events, generated, key_ids
from .fakes import FakeDns, FakeSigner, ManualClock, demo_policy


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteEventStore]:
    s = SqliteEventStore(tmp_path / "rotator.db")
    yield s
    s.close()


def count(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    finally:
        conn.close()


def raw(path: Path) -> sqlite3.Connection:
    """A plain connection with the append-only triggers dropped, for tampering."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute("DROP TRIGGER events_no_delete")
    return conn


# --- basics ---------------------------------------------------------------------------------


def test_wal_mode(store: SqliteEventStore) -> None:
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other = sqlite3.connect(store.path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent
    finally:
        other.close()


def test_expected_version_mismatch_writes_nothing(store: SqliteEventStore) -> None:
    store.append([added("a.com")], {"identity:a.com": 0})
    before = count(store.path)
    with pytest.raises(ConcurrencyError, match=r"identity:a.com is at version 1, expected 0"):
        store.append(
            [added("b.com"), ev.RotationRequested(at=at(1), identity="a.com", domain="a.com")],
            {"identity:b.com": 0, "identity:a.com": 0},
        )
    assert count(store.path) == before
    assert store.identity("b.com") is None  # the first event of the batch is gone too
    ident = store.identity("a.com")
    assert ident is not None and ident.version == 1


def test_illegal_transition_mid_batch_writes_nothing(store: SqliteEventStore) -> None:
    store.append([added("a.com")], {})
    before = count(store.path)
    batch = [
        generated("k1", "a.com", 1),
        ev.KeyPublished(**key_ids("k1", "a.com", 2), server="ns"),
        ev.KeyActivated(**key_ids("k1", "a.com", 3), rotate_at=at(100)),  # not verified
        added("b.com", 4),
    ]
    with pytest.raises(IllegalTransition, match="KeyActivated is not allowed in state published"):
        store.append(batch, {})
    assert count(store.path) == before
    assert store.key("k1") is None
    assert store.identity("b.com") is None
    ident = store.identity("a.com")
    assert ident is not None and ident.pending_key is None
    # the store is still usable afterwards
    store.append(batch[:2], {"key:k1": 0})
    assert count(store.path) == before + 2


def test_duplicate_selector_is_refused_atomically(store: SqliteEventStore) -> None:
    store.append([added("a.com"), generated("k1", "a.com", 1, selector="dup.myesp")], {})
    before = count(store.path)
    with pytest.raises(IllegalTransition, match="selector already used"):
        store.append([generated("k2", "a.com", 2, selector="dup.myesp")], {"key:k2": 0})
    assert count(store.path) == before
    assert store.key("k2") is None


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE events SET reason = 'edited' WHERE position = 1",
        "DELETE FROM events WHERE position = 1",
        "DELETE FROM events",
    ],
)
def test_events_are_append_only(store: SqliteEventStore, sql: str) -> None:
    five_events(store)
    conn = sqlite3.connect(store.path)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="events are append-only"):
            conn.execute(sql)
        conn.rollback()
    finally:
        conn.close()
    with pytest.raises(sqlite3.DatabaseError, match="events are append-only"):
        store.db.execute(sql)
    assert count(store.path) == 5
    assert store.verify_chain() == (5, None)


# --- hash chain -----------------------------------------------------------------------------


def test_tamper_edit_reason_is_detected(store: SqliteEventStore) -> None:
    five_events(store)
    conn = raw(store.path)
    conn.execute("UPDATE events SET reason = 'nothing to see' WHERE position = 3")
    conn.close()
    n, problem = store.verify_chain()
    assert problem is not None
    assert "event 3" in problem
    assert n == 3


def test_tamper_edit_actor_and_rehash_is_detected(store: SqliteEventStore) -> None:
    # Recomputing the edited event's own hash is not enough: the next link breaks.
    from rotator.adapters.store.sqlite import event_hash

    five_events(store)
    conn = raw(store.path)
    conn.row_factory = sqlite3.Row
    row = dict(conn.execute("SELECT * FROM events WHERE position = 2").fetchone())
    row["actor"] = "mallory"
    body = {k: v for k, v in row.items() if k != "position"}
    conn.execute(
        "UPDATE events SET actor = ?, hash = ? WHERE position = 2",
        ["mallory", event_hash(body)],
    )
    conn.close()
    n, problem = store.verify_chain()
    assert problem is not None and "event 3" in problem and "prev_hash" in problem
    assert n == 3


@pytest.mark.parametrize(("victim", "named"), [(1, 1), (3, 3), (4, 4)])
def test_tamper_delete_is_detected(store: SqliteEventStore, victim: int, named: int) -> None:
    five_events(store)
    conn = raw(store.path)
    conn.execute("DELETE FROM events WHERE position = ?", [victim])
    conn.close()
    _, problem = store.verify_chain()
    assert problem is not None
    assert f"position {named}" in problem


def test_tamper_swap_payloads_is_detected(store: SqliteEventStore) -> None:
    five_events(store)
    conn = raw(store.path)
    p2, p3 = (
        conn.execute("SELECT payload FROM events WHERE position = ?", [pos]).fetchone()[0]
        for pos in (2, 3)
    )
    assert p2 != p3
    conn.execute("UPDATE events SET payload = ? WHERE position = 2", [p3])
    conn.execute("UPDATE events SET payload = ? WHERE position = 3", [p2])
    conn.close()
    n, problem = store.verify_chain()
    assert problem is not None
    assert "event 2" in problem
    assert n == 2


# --- projections ----------------------------------------------------------------------------


def test_rebuild_check_and_repair(store: SqliteEventStore) -> None:
    five_events(store)
    assert store.rebuild(check_only=True) == []
    conn = sqlite3.connect(store.path)
    conn.execute("UPDATE keys SET state = 'active' WHERE key_id = 'k1'")
    conn.execute("DELETE FROM identities WHERE identity = 'c.com'")
    conn.commit()
    conn.close()
    diffs = store.rebuild(check_only=True)
    assert any(d.startswith("key k1: state") and "published" in d for d in diffs), diffs
    assert any(d.startswith("identity c.com:") and "missing" in d for d in diffs), diffs
    key = store.key("k1")
    assert key is not None and key.state is State.ACTIVE  # check_only changed nothing
    assert store.rebuild() == diffs
    key = store.key("k1")
    assert key is not None and key.state is State.PUBLISHED
    assert store.identity("c.com") is not None
    assert store.rebuild(check_only=True) == []
    assert count(store.path) == 5  # the log itself is untouched


def test_rebuild_reports_rows_not_in_the_log(store: SqliteEventStore) -> None:
    five_events(store)
    conn = sqlite3.connect(store.path)
    conn.execute(
        "INSERT INTO keys SELECT 'ghost', identity, domain, 'ghost.sel', policy, algorithm, "
        "bits, fingerprint, zone, record_name, record, ttl, state, since, created_at, version, "
        "next_action, next_action_at, attempts, last_error, replaces, successor, "
        "revocation_published, tombstone_removed, activated_at, drain_until, lookup_name, "
        "customer_managed, compromised, emergency_actor, emergency_reason, mac, parked, drift, "
        "last_error_code "
        "FROM keys WHERE key_id = 'k1'"
    )
    conn.commit()
    conn.close()
    assert store.rebuild(check_only=True) == ["key ghost: not in the log"]
    store.rebuild()
    assert store.key("ghost") is None


def test_due_keys_filters_orders_and_uses_the_partial_index(store: SqliteEventStore) -> None:
    store.append([added(d) for d in ("a.com", "b.com", "c.com", "d.com")], {})
    store.append(
        [
            generated("ka", "a.com", 10),
            generated("kb", "b.com", 5),
            generated("kc", "c.com", 20),
            generated("kd", "d.com", 1),
            ev.KeyPublished(**key_ids("kd", "d.com", 2), server="ns"),
            ev.KeyVerified(**key_ids("kd", "d.com", 3), results=(), activate_at=at(3)),
            ev.KeyActivated(**key_ids("kd", "d.com", 3), rotate_at=at(10_000)),
        ],
        {},
    )
    statements: list[str] = []
    store.db.conn.set_trace_callback(statements.append)
    try:
        due = store.due_keys(at(15))
    finally:
        store.db.conn.set_trace_callback(None)
    assert [k.key_id for k in due] == ["kb", "ka"]
    assert [k.key_id for k in store.due_keys(at(10_000_000))] == ["kb", "ka", "kc"]  # kd active
    assert [k.key_id for k in store.due_keys(at(10_000_000), limit=1)] == ["kb"]
    assert store.due_keys(at(4)) == []
    assert [k.key_id for k in store.due_keys(at(5))] == ["kb"]  # due exactly now
    query = [s for s in statements if "FROM keys" in s]
    assert len(query) == 1
    plan = store.db.execute(f"EXPLAIN QUERY PLAN {query[0]}").fetchall()
    details = " ".join(str(row[-1]) for row in plan)
    assert "keys_due" in details, details
    assert "TEMP B-TREE" not in details  # ordered by the index, no sort step
    assert store.next_due() == at(5)


# --- concurrency between two store instances ------------------------------------------------


def race(stores: list[SqliteEventStore], domain: str) -> list[str]:
    """Each store appends IdentityAdded(domain) expecting version 0, released together."""
    barrier = threading.Barrier(len(stores))
    outcomes: list[str] = []
    lock = threading.Lock()

    def write(s: SqliteEventStore, who: str) -> None:
        event = ev.IdentityAdded(
            at=T0,
            actor=who,
            identity=domain,
            domain=domain,
            zone=domain,
            policy="demo",
            signing_pattern=f"*@{domain}",
        )
        barrier.wait()
        try:
            s.append([event], {event.stream_id: 0})
            result = "ok"
        except ConcurrencyError:
            result = "conflict"
        with lock:
            outcomes.append(result)

    threads = [
        threading.Thread(target=write, args=(s, f"writer-{i}")) for i, s in enumerate(stores)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return sorted(outcomes)


def test_two_stores_same_stream_exactly_one_wins(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    a, b = SqliteEventStore(path), SqliteEventStore(path)
    try:
        for round_ in range(5):
            domain = f"d{round_}.com"
            assert race([a, b], domain) == ["conflict", "ok"]
            assert a.stream_version(f"identity:{domain}") == 1
            assert b.stream_version(f"identity:{domain}") == 1
        assert count(path) == 5
        assert a.verify_chain() == (5, None)
        assert b.rebuild(check_only=True) == []
    finally:
        a.close()
        b.close()


# --- no private key material in the log -----------------------------------------------------


def secret_forms(pem: bytes) -> list[str]:
    """Text forms a private key could leak in: the PEM body, and the private seed (ed25519,
    also each PEM line) or private exponent (RSA) in hex, decimal and base64."""
    lines = [ln for ln in pem.decode().splitlines() if not ln.startswith("-----")]
    forms = ["".join(lines)]
    key = serialization.load_pem_private_key(pem, password=None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        forms += [*lines, seed.hex(), base64.b64encode(seed).decode()]
    else:
        # (RSA PEM lines are not checked one by one: they also hold the public modulus)
        assert isinstance(key, rsa.RSAPrivateKey)
        d = key.private_numbers().d
        d_bytes = d.to_bytes((d.bit_length() + 7) // 8, "big")
        forms += [format(d, "x"), str(d), base64.b64encode(d_bytes).decode()]
    return forms


@pytest.mark.parametrize("algorithm", ["ed25519", "rsa"])
def test_no_private_key_material_in_events(tmp_path: Path, algorithm: str) -> None:
    clock = ManualClock(T0)
    dns, signer = FakeDns(), FakeSigner()
    store = SqliteEventStore(tmp_path / "rotator.db")
    keystore = FsKeyStore(tmp_path / "keys")
    overrides: dict[str, dict[str, object]] = {}
    if algorithm == "rsa":
        overrides["key"] = {"algorithm": "rsa", "bits": 1024}
    policy: Any = demo_policy(**overrides)

    def policies(name: str) -> Any:
        if name != "demo":
            raise NotFound(name)
        return policy

    app = Application(Context(store, policies, dns, dns, keystore, signer, clock))
    try:
        app.onboarding.add_identity("example.com", "demo", actor="alice", reason="onboard")
        app.lifecycle.tick()
        (first,) = store.list_keys()
        assert first.algorithm == algorithm
        pem = keystore.path(first.key_id).read_bytes()
        assert b"PRIVATE KEY" in pem
        forms = secret_forms(pem)
        clock.advance(61)
        app.lifecycle.tick()  # a successor: the first key drains
        clock.advance(31)
        app.lifecycle.tick()  # revoked and destroyed
        clock.advance(21)
        app.lifecycle.tick()  # tombstone removed
        key = store.key(first.key_id)
        assert key is not None and key.tombstone_removed
        assert not keystore.exists(first.key_id)
    finally:
        store.close()

    conn = sqlite3.connect(tmp_path / "rotator.db")
    try:
        rows = conn.execute("SELECT * FROM events").fetchall()
        types = {r[0] for r in conn.execute("SELECT DISTINCT type FROM events")}
    finally:
        conn.close()
    assert {"KeyGenerated", "KeyActivated", "KeyDestroyed", "TombstoneRemoved"} <= types
    cells = [str(c) for row in rows for c in row]
    for form in forms:
        assert len(form) >= 40
        leaks = [c for c in cells if form in c]
        assert leaks == [], f"private key material found in events: {form[:16]}..."


def test_the_append_path_hashes_exactly_as_event_hash_defines(store: SqliteEventStore) -> None:
    # append() builds the hash body in sorted key order without re-sorting; the chain must
    # stay what store_rows.event_hash (the definition `audit verify` uses) computes
    from rotator.adapters.store.rows import event_hash

    five_events(store)
    rows = [dict(r) for r in store.db.query("SELECT * FROM events ORDER BY position")]
    assert rows
    for row in rows:
        body = {k: v for k, v in row.items() if k not in ("position", "hash", "mac")}
        assert event_hash(body) == row["hash"]
