"""The service driven through a whole lifecycle with in-memory DNS and a real SQLite store
and real key files: the core's rules, fast."""

from __future__ import annotations

import dataclasses
import os
import stat
from datetime import timedelta
from typing import Any

import pytest

from rotator.domain import events as ev
from rotator.domain.errors import InputError, NotFound
from rotator.domain.states import State
from tests.support.lifecycle import LIFECYCLE_EVENTS

from .conftest import UnitEnv


def states(env: UnitEnv) -> dict[str, str]:
    return {k.selector: k.state.value for k in env.store.list_keys()}


def test_first_key_goes_live_in_one_tick(env: UnitEnv) -> None:
    env.app.onboarding.add_identity("example.com", "demo")
    report = env.app.lifecycle.tick()
    (key,) = env.store.list_keys()
    assert key.state is State.ACTIVE
    assert report.generated == 1
    assert env.dns.records[key.record_name].startswith("v=DKIM1; k=ed25519; p=")
    assert [e.selector for e in env.signer.entries] == [key.selector]
    path = env.keystore.path(key.key_id)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(env.keystore.dir).st_mode) == 0o700


def test_full_lifecycle_and_rebuild(env: UnitEnv) -> None:
    env.app.onboarding.add_identity("example.com", "demo")
    env.app.lifecycle.tick()
    (first,) = env.store.list_keys()
    env.clock.advance(61)  # rotation interval 60 s
    env.app.lifecycle.tick()
    second = next(k for k in env.store.list_keys() if k.key_id != first.key_id)
    assert env.key(first.key_id).state is State.DRAINING
    assert second.state is State.ACTIVE
    assert [e.key_id for e in env.signer.entries] == [second.key_id]
    # still published while draining (3 x 10 s)
    assert "p=" in env.dns.records[first.record_name]
    assert env.dns.records[first.record_name] != "v=DKIM1; p="
    env.clock.advance(29)
    env.app.lifecycle.tick()
    assert env.key(first.key_id).state is State.DRAINING
    env.clock.advance(2)
    env.app.lifecycle.tick()
    assert env.dns.records[first.record_name] == "v=DKIM1; p="
    k1 = env.key(first.key_id)
    assert k1.state is State.DESTROYED
    assert not env.keystore.exists(first.key_id)
    env.clock.advance(21)  # tombstone retention 20 s
    env.app.lifecycle.tick()
    assert first.record_name not in env.dns.records
    assert env.key(first.key_id).tombstone_removed
    types = [
        type(s.event).__name__
        for s in env.store.events()
        if getattr(s.event, "key_id", None) == first.key_id
    ]
    assert types == list(LIFECYCLE_EVENTS)
    assert env.store.rebuild(check_only=True) == []
    assert env.store.verify_chain()[1] is None


def test_publish_failure_is_recorded_and_retried_with_backoff(env: UnitEnv) -> None:
    env.app.onboarding.add_identity("example.com", "demo")
    env.dns.fail_publish = "REFUSED from 127.0.0.1:53"
    env.app.lifecycle.tick()
    (key,) = env.store.list_keys()
    assert key.state is State.GENERATED
    assert key.attempts == 1 and key.last_error == "REFUSED from 127.0.0.1:53"
    assert (key.next_action_at - env.clock.now()).total_seconds() == 1
    env.clock.advance(1)
    env.app.lifecycle.tick()
    key = env.key(key.key_id)
    assert key.attempts == 2
    assert (key.next_action_at - env.clock.now()).total_seconds() == 2  # doubled
    env.dns.fail_publish = None
    env.clock.advance(2)
    env.app.lifecycle.tick()
    assert env.key(key.key_id).state is State.ACTIVE
    fails = [s.event for s in env.store.events() if isinstance(s.event, ev.ActionFailed)]
    assert [f.attempt for f in fails] == [1, 2]


def lag_secondary(env: UnitEnv) -> None:
    """From now on the "secondary" serves nothing new: every published name lags there."""
    real_apply = env.dns.apply

    def apply_lagging(zone: str, changes: Any) -> str:
        for c in changes:
            env.dns.lagging.add(c.name)
        return real_apply(zone, changes)

    env.dns.apply = apply_lagging  # type: ignore[method-assign]


def test_lagging_nameserver_blocks_verification_without_a_failure(env: UnitEnv) -> None:
    env.app.onboarding.add_identity("example.com", "demo")
    env.app.lifecycle.tick()
    (first,) = env.store.list_keys()
    env.clock.advance(61)
    lag_secondary(env)  # the new key must not go active
    env.app.lifecycle.tick()
    new = next(k for k in env.store.list_keys() if k.key_id != first.key_id)
    assert new.state is State.PUBLISHED
    # propagation is a normal state: nothing recorded while the servers catch up
    assert (new.attempts, new.last_error) == (0, None)
    assert env.key(first.key_id).state is State.ACTIVE  # never without an active key
    waiting = env.app.lifecycle.verifying.next_checks()
    assert waiting == {new.key_id: env.clock.now() + timedelta(seconds=0.5)}
    assert env.app.lifecycle.next_due() == waiting[new.key_id]  # the daemon wakes for it
    env.app.lifecycle.tick()  # not due again yet: no query, no event
    assert env.key(new.key_id).version == new.version
    env.dns.lagging.clear()
    env.clock.advance(5)
    env.app.lifecycle.tick()
    assert env.key(new.key_id).state is State.ACTIVE
    assert env.key(first.key_id).state is State.DRAINING
    verified = next(
        s.event
        for s in env.store.events()
        if isinstance(s.event, ev.KeyVerified) and s.event.key_id == new.key_id
    )
    assert verified.waited == 5
    assert [(r["address"], r["ok"]) for r in verified.lagged] == [
        ("127.0.0.1:53", True),
        ("127.0.0.2:53", False),
    ]
    assert not [s for s in env.store.events() if isinstance(s.event, ev.ActionFailed)]


def test_lag_past_the_verification_time_is_a_failure(env: UnitEnv) -> None:
    env.policies["demo"] = dataclasses.replace(
        env.policies["demo"], verify_timeout=timedelta(seconds=10)
    )
    env.app.onboarding.add_identity("example.com", "demo")
    lag_secondary(env)
    for _ in range(11):  # checks at 0, 0.5, 2, 3, ... (pauses double up to the retry base)
        env.app.lifecycle.tick()
        env.clock.advance(1)
    (key,) = env.store.list_keys()
    assert key.state is State.PUBLISHED and key.attempts == 1
    assert "127.0.0.2:53" in key.last_error and "[verification overdue]" in key.last_error
    (failed,) = [s.event for s in env.store.events() if isinstance(s.event, ev.ActionFailed)]
    assert failed.action == "verify" and len(failed.details) == 2


def test_signer_reload_failure_keeps_old_key(env: UnitEnv) -> None:
    env.app.onboarding.add_identity("example.com", "demo")
    env.app.lifecycle.tick()
    (first,) = env.store.list_keys()
    env.signer.fail = "reload command 'opendkim-reload' exited 1"
    env.clock.advance(61)
    env.app.lifecycle.tick()
    new = next(k for k in env.store.list_keys() if k.key_id != first.key_id)
    assert new.state is State.VERIFIED
    assert env.key(first.key_id).state is State.ACTIVE


def test_rotate_now_and_refusals(env: UnitEnv) -> None:
    env.app.onboarding.add_identity("example.com", "demo")
    with pytest.raises(InputError, match="already managed"):
        env.app.onboarding.add_identity("EXAMPLE.com.", "demo")
    with pytest.raises(NotFound, match="policy 'nope'"):
        env.app.onboarding.add_identity("other.com", "nope")
    with pytest.raises(NotFound, match="not managed"):
        env.app.rotation.request("unknown.com", "alice", "test")
    env.app.lifecycle.tick()
    env.app.rotation.request("example.com", "alice", "quarterly audit")
    env.dns.fail_publish = "timeout"
    env.app.lifecycle.tick()  # the successor is stuck in generated
    with pytest.raises(InputError, match="already in progress"):
        env.app.rotation.request("example.com", "bob", "again")
    req = [s.event for s in env.store.events() if type(s.event).__name__ == "RotationRequested"]
    assert req[0].actor == "alice" and req[0].reason == "quarterly audit"
    assert len(req) == 1


def test_orphan_key_file_is_wiped_on_startup(env: UnitEnv) -> None:
    env.keystore.generate("deadbeefdeadbeef", "ed25519", 256)  # crash before KeyGenerated
    env.app.onboarding.add_identity("example.com", "demo")
    env.app.lifecycle.tick()
    wiped = env.app.lifecycle.startup()
    assert wiped == ["deadbeefdeadbeef"]
    assert len(env.keystore.stored_ids()) == 1


def test_zone_must_hold_the_records(env: UnitEnv) -> None:
    with pytest.raises(InputError, match="cannot hold DKIM records"):
        env.app.onboarding.add_identity("example.com", "demo", zone="other.org")
    with pytest.raises(InputError, match="outside zone"):
        env.app.onboarding.add_identity("example.com", "demo", zone="acme._domainkey.example.com")
    ident = env.app.onboarding.add_identity(
        "example.com", "demo", zone="myesp._domainkey.example.com"
    )
    assert ident.zone == "myesp._domainkey.example.com"


def test_tick_records_every_step_at_the_time_it_was_given(env: UnitEnv) -> None:
    env.app.onboarding.add_identity("example.com", "demo")
    later = env.clock.now() + timedelta(minutes=5)
    env.app.lifecycle.tick(now=later)
    (key,) = env.store.list_keys()
    assert key.state is State.ACTIVE
    steps = [s.event for s in env.store.events() if isinstance(s.event, ev.KeyEvent)]
    assert [type(e).__name__ for e in steps] == list(LIFECYCLE_EVENTS[:4])
    assert {e.at for e in steps} == {later}


def test_a_key_whose_policy_file_is_gone_fails_alone(env: UnitEnv) -> None:
    env.policies["doomed"] = dataclasses.replace(env.policies["demo"], name="doomed")
    env.app.onboarding.add_identity("a.example", "demo")
    env.app.onboarding.add_identity("b.example", "doomed")
    env.app.lifecycle.tick()
    env.clock.advance(61)
    env.app.lifecycle.tick()  # both rotated: each old key drains
    (old_a,) = env.keys("a.example", State.DRAINING)
    (old_b,) = env.keys("b.example", State.DRAINING)
    del env.policies["doomed"]  # policies/doomed.toml deleted under a running daemon
    env.clock.advance(31)
    env.app.lifecycle.tick()
    assert env.key(old_a.key_id).state is State.DESTROYED  # the others go on
    stuck = env.key(old_b.key_id)
    assert stuck.state is State.DRAINING
    assert stuck.attempts == 1 and "policy 'doomed' not found" in stuck.last_error
    failed = [s.event for s in env.store.events() if isinstance(s.event, ev.ActionFailed)]
    assert [(f.key_id, f.action) for f in failed] == [(old_b.key_id, "revoke")]
    # its identity's next rotation is deferred with the same reason, not skipped silently
    env.clock.advance(60)
    env.app.lifecycle.tick()
    ident = env.store.identity("b.example")
    assert ident is not None and "policy 'doomed' not found" in ident.notice


def test_startup_wipes_temp_files_an_interrupted_write_left(env: UnitEnv) -> None:
    env.keystore.prepare()
    leftovers = [env.keystore.dir / ".k1.0123abcd.tmp", env.keystore.dir / "k2.tmp"]
    witnesses = []
    for i, path in enumerate(leftovers):
        path.write_bytes(b"-----BEGIN PRIVATE KEY-----\nhalf\n")
        witness = env.tmp / f"witness{i}"
        os.link(path, witness)
        witnesses.append(witness)
    env.app.lifecycle.startup()
    assert not any(p.exists() for p in leftovers)
    assert all(set(w.read_bytes()) == {0} for w in witnesses)  # zeroed, not just unlinked


def test_a_key_store_that_cannot_take_keys_defers_with_the_reason(env: UnitEnv) -> None:
    env.app.onboarding.add_identity("example.com", "demo")
    env.keystore.dir.write_text("not a directory")  # every key write fails, even as root
    env.app.lifecycle.tick()  # must not raise
    ident = env.store.identity("example.com")
    assert ident is not None and ident.notice.startswith("cannot generate a key: key_dir ")
    assert env.store.list_keys() == []


def test_a_rotation_reads_only_what_it_switches(env: UnitEnv, monkeypatch: Any) -> None:
    # The tick must cost O(keys due), not O(identities): once the signer is in step, an
    # activation never reads every identity or every active key (the complete set is
    # read only by a target that has not been written yet).
    for i in range(3):
        env.app.onboarding.add_identity(f"d{i}.example", "demo")
    env.app.lifecycle.tick()
    assert len(env.signer.entries) == 3
    (old,) = env.store.list_keys("d0.example")

    def everything(*args: Any, **kw: Any) -> Any:
        if kw.get("state") is State.ACTIVE or (not args and not kw):
            raise AssertionError("a rotation read every active key or identity")
        return real_list_keys(*args, **kw)

    real_list_keys = env.store.list_keys
    monkeypatch.setattr(env.store, "identities", lambda: everything())
    monkeypatch.setattr(env.store, "list_keys", everything)
    env.app.rotation.request("d0.example", actor="test", reason="test")
    env.app.lifecycle.tick()
    monkeypatch.undo()
    new = env.key_of("d0.example", State.ACTIVE)
    assert new.key_id != old.key_id and env.key(old.key_id).state is State.DRAINING
    assert sorted(e.key_id for e in env.signer.entries) == sorted(
        k.key_id for k in env.store.list_keys(state=State.ACTIVE)
    )


def test_activations_between_generation_chunks_are_coalesced(
    env: UnitEnv, monkeypatch: Any
) -> None:
    # A real signer's tables list every key: a rewrite per 16-key chunk would take over a
    # big tick. Between chunks, an activation waits until twice its last cost has passed.
    from rotator.app import generation, lifecycle, signing
    from rotator.app.generation import CHUNK

    monkeypatch.setattr(generation, "MIN_CHUNK_S", 0.0)  # chunks by count: eight of them
    # a clock that moves only while the signer writes (10 s a write): deterministic on a
    # loaded machine
    clock = [0.0]
    fake_time = type("T", (), {"monotonic": staticmethod(lambda: clock[0])})
    monkeypatch.setattr(lifecycle, "time", fake_time)
    monkeypatch.setattr(signing, "time", fake_time)
    for i in range(8 * CHUNK):
        env.app.onboarding.add_identity(f"d{i}.example", "demo")
    slow_change = env.signer.change

    def change(*args: Any, **kw: Any) -> Any:
        clock[0] += 10.0
        return slow_change(*args, **kw)

    monkeypatch.setattr(env.signer, "change", change)
    before = env.signer.applied
    env.app.lifecycle.tick()
    assert len(env.store.list_keys(state=State.ACTIVE)) == 8 * CHUNK
    assert env.signer.applied - before <= 3  # not one per chunk (8)


def test_start_up_rewrites_the_signer_only_if_the_log_moved_since_it_was_in_step(
    env: UnitEnv,
) -> None:
    env.app.onboarding.add_identity("a.example", "demo")
    env.app.lifecycle.tick()
    head = env.store.head()
    assert head is not None and env.signer.stamped() == head[0]
    env.signer.synced = False  # a restarted daemon: its targets' state is unknown to it
    writes = env.signer.applied
    env.app.lifecycle.startup()
    assert env.signer.applied == writes and env.signer.synced  # trusted the stamp
    env.app.onboarding.add_identity("b.example", "demo")  # may change what signs
    env.app.lifecycle.startup()
    assert env.signer.applied == writes + 1


def test_a_failed_signer_write_leaves_no_stamp(env: UnitEnv) -> None:
    env.app.onboarding.add_identity("a.example", "demo")
    env.app.lifecycle.tick()
    env.app.rotation.request("a.example", "bob", "test")
    env.signer.fail = "mx1 unreachable"
    env.app.lifecycle.tick()
    assert env.signer.stamped() is None  # a start-up now rewrites every target
    env.signer.fail = None
    writes = env.signer.applied
    env.app.lifecycle.startup()
    assert env.signer.applied == writes + 1


def test_an_event_is_stamped_when_it_is_recorded(env: UnitEnv) -> None:
    # a slow step (here: each UPDATE takes 7 s) makes the tick's `now` old by the time its
    # outcomes are recorded: they carry the recording time, never earlier than the event before
    for name in ("a.example", "b.example", "c.example"):
        env.app.onboarding.add_identity(name, "demo")
    real_apply = env.dns.apply

    def slow_apply(zone: str, changes: Any) -> str:
        env.clock.advance(7)
        return real_apply(zone, changes)

    env.dns.apply = slow_apply  # type: ignore[method-assign]
    start = env.clock.now()
    env.app.lifecycle.tick()
    stored = list(env.store.events())
    times = [s.event.at for s in stored]
    assert times == sorted(times)
    published = [s.event for s in stored if isinstance(s.event, ev.KeyPublished)]
    assert published and min(e.at for e in published) >= start + timedelta(seconds=7)
    # the store keeps the order against a writer whose clock is behind (another process)
    late = dataclasses.replace(stored[0].event, at=start - timedelta(hours=1))
    assert isinstance(late, ev.IdentityAdded)
    other = dataclasses.replace(
        late, identity="d.example", domain="d.example", signing_pattern="*@d.example"
    )
    env.store.append([other], {})
    assert list(env.store.events())[-1].event.at == times[-1]
