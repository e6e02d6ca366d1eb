"""The service driven through a whole lifecycle with in-memory DNS and a real SQLite store
and real key files: the core's rules, fast."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from rotator.adapters.keystore_fs import FsKeyStore
from rotator.adapters.store_sqlite import SqliteEventStore
from rotator.domain.errors import InputError, NotFound
from rotator.domain.states import State
from rotator.service import Service

from .fakes import FakeDns, FakeSigner, ManualClock, demo_policy


@pytest.fixture
def env(tmp_path: Path) -> Any:
    clock = ManualClock()
    dns = FakeDns()
    signer = FakeSigner()
    store = SqliteEventStore(tmp_path / "rotator.db")
    keystore = FsKeyStore(tmp_path / "keys")
    policy = demo_policy()

    def policies(name: str) -> Any:
        if name != "demo":
            raise NotFound(f"policy {name!r} not found")
        return policy

    svc = Service(store, policies, dns, dns, keystore, signer, clock)

    class Env:
        pass

    e = Env()
    e.__dict__.update(
        clock=clock, dns=dns, signer=signer, store=store, keystore=keystore, svc=svc, tmp=tmp_path
    )
    return e


def states(env: Any) -> dict[str, str]:
    return {k.selector: k.state.value for k in env.store.list_keys()}


def test_first_key_goes_live_in_one_tick(env: Any) -> None:
    env.svc.add_identity("example.com", "demo")
    report = env.svc.tick()
    (key,) = env.store.list_keys()
    assert key.state is State.ACTIVE
    assert report.generated == 1
    assert env.dns.records[key.record_name].startswith("v=DKIM1; k=ed25519; p=")
    assert [e.selector for e in env.signer.entries] == [key.selector]
    path = env.keystore.path(key.key_id)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(env.keystore.dir).st_mode) == 0o700


def test_full_lifecycle_and_rebuild(env: Any) -> None:
    env.svc.add_identity("example.com", "demo")
    env.svc.tick()
    (first,) = env.store.list_keys()
    env.clock.advance(61)  # rotation interval 60 s
    env.svc.tick()
    second = next(k for k in env.store.list_keys() if k.key_id != first.key_id)
    assert env.store.key(first.key_id).state is State.DRAINING
    assert second.state is State.ACTIVE
    assert [e.key_id for e in env.signer.entries] == [second.key_id]
    # still published while draining (3 x 10 s)
    assert "p=" in env.dns.records[first.record_name]
    assert env.dns.records[first.record_name] != "v=DKIM1; p="
    env.clock.advance(29)
    env.svc.tick()
    assert env.store.key(first.key_id).state is State.DRAINING
    env.clock.advance(2)
    env.svc.tick()
    assert env.dns.records[first.record_name] == "v=DKIM1; p="
    k1 = env.store.key(first.key_id)
    assert k1.state is State.DESTROYED
    assert not env.keystore.exists(first.key_id)
    env.clock.advance(21)  # tombstone retention 20 s
    env.svc.tick()
    assert first.record_name not in env.dns.records
    assert env.store.key(first.key_id).tombstone_removed
    types = [
        type(s.event).__name__
        for s in env.store.events()
        if getattr(s.event, "key_id", None) == first.key_id
    ]
    assert types == [
        "KeyGenerated",
        "KeyPublished",
        "KeyVerified",
        "KeyActivated",
        "DrainStarted",
        "RevocationPublished",
        "KeyRevoked",
        "KeyDestroyed",
        "TombstoneRemoved",
    ]
    assert env.store.rebuild(check_only=True) == []
    assert env.store.verify_chain()[1] is None


def test_publish_failure_is_recorded_and_retried_with_backoff(env: Any) -> None:
    env.svc.add_identity("example.com", "demo")
    env.dns.fail_publish = "REFUSED from 127.0.0.1:53"
    env.svc.tick()
    (key,) = env.store.list_keys()
    assert key.state is State.GENERATED
    assert key.attempts == 1 and key.last_error == "REFUSED from 127.0.0.1:53"
    assert (key.next_action_at - env.clock.now()).total_seconds() == 1
    env.clock.advance(1)
    env.svc.tick()
    key = env.store.key(key.key_id)
    assert key.attempts == 2
    assert (key.next_action_at - env.clock.now()).total_seconds() == 2  # doubled
    env.dns.fail_publish = None
    env.clock.advance(2)
    env.svc.tick()
    assert env.store.key(key.key_id).state is State.ACTIVE
    fails = [s.event for s in env.store.events() if type(s.event).__name__ == "ActionFailed"]
    assert [f.attempt for f in fails] == [1, 2]


def test_lagging_nameserver_blocks_verification(env: Any) -> None:
    env.svc.add_identity("example.com", "demo")
    env.svc.tick()
    (first,) = env.store.list_keys()
    env.clock.advance(61)
    # the secondary does not serve anything new: the new key must not go active
    real_apply = env.dns.apply

    def apply_lagging(zone: str, changes: Any) -> str:
        for c in changes:
            env.dns.lagging.add(c.name)
        return real_apply(zone, changes)

    env.dns.apply = apply_lagging
    env.svc.tick()
    new = next(k for k in env.store.list_keys() if k.key_id != first.key_id)
    assert new.state is State.PUBLISHED
    assert "127.0.0.2:53" in new.last_error
    assert env.store.key(first.key_id).state is State.ACTIVE  # never without an active key
    env.dns.lagging.clear()
    env.clock.advance(5)
    env.svc.tick()
    assert env.store.key(new.key_id).state is State.ACTIVE
    assert env.store.key(first.key_id).state is State.DRAINING


def test_signer_reload_failure_keeps_old_key(env: Any) -> None:
    env.svc.add_identity("example.com", "demo")
    env.svc.tick()
    (first,) = env.store.list_keys()
    env.signer.fail = "reload command 'opendkim-reload' exited 1"
    env.clock.advance(61)
    env.svc.tick()
    new = next(k for k in env.store.list_keys() if k.key_id != first.key_id)
    assert new.state is State.VERIFIED
    assert env.store.key(first.key_id).state is State.ACTIVE


def test_rotate_now_and_refusals(env: Any) -> None:
    env.svc.add_identity("example.com", "demo")
    with pytest.raises(InputError, match="already managed"):
        env.svc.add_identity("EXAMPLE.com.", "demo")
    with pytest.raises(NotFound, match="policy 'nope'"):
        env.svc.add_identity("other.com", "nope")
    with pytest.raises(NotFound, match="not managed"):
        env.svc.request_rotation("unknown.com", "alice", "test")
    env.svc.tick()
    env.svc.request_rotation("example.com", "alice", "quarterly audit")
    env.dns.fail_publish = "timeout"
    env.svc.tick()  # the successor is stuck in generated
    with pytest.raises(InputError, match="already in progress"):
        env.svc.request_rotation("example.com", "bob", "again")
    req = [s.event for s in env.store.events() if type(s.event).__name__ == "RotationRequested"]
    assert req[0].actor == "alice" and req[0].reason == "quarterly audit"
    assert len(req) == 1


def test_orphan_key_file_is_wiped_on_startup(env: Any) -> None:
    env.keystore.generate("deadbeefdeadbeef", "ed25519", 256)  # crash before KeyGenerated
    env.svc.add_identity("example.com", "demo")
    env.svc.tick()
    wiped = env.svc.startup()
    assert wiped == ["deadbeefdeadbeef"]
    assert len(env.keystore.stored_ids()) == 1


def test_zone_must_hold_the_records(env: Any) -> None:
    with pytest.raises(InputError, match="cannot hold DKIM records"):
        env.svc.add_identity("example.com", "demo", zone="other.org")
    with pytest.raises(InputError, match="outside zone"):
        env.svc.add_identity("example.com", "demo", zone="acme._domainkey.example.com")
    ident = env.svc.add_identity("example.com", "demo", zone="myesp._domainkey.example.com")
    assert ident.zone == "myesp._domainkey.example.com"
