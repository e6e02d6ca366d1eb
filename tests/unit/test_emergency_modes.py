"""Emergency rotation, standby keys and the CNAME-based modes through the service, with
in-memory DNS, a real SQLite store and real key files."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from rotator.adapters.runtime.workers import WorkerPool
from rotator.app import CustomerRow, Scope
from rotator.domain import events as ev
from rotator.domain.errors import InputError, NotFound, SignerLockBusy
from rotator.domain.policy import pingpong_problem
from rotator.domain.states import State

from .conftest import UnitEnv
from .fakes import demo_policy


def test_emergency_leaves_signer_at_once_then_revokes_without_drain(env: UnitEnv) -> None:
    env.app.onboarding.add_identity("example.com", "demo")
    env.app.lifecycle.tick()
    (old,) = env.keys("example.com", State.ACTIVE)
    plan = env.app.emergency.plan(Scope(domain="example.com"))
    assert [k.key_id for k in plan.compromise] == [old.key_id] and plan.promote == []
    env.app.emergency.declare(plan, "carol", "leaked")
    # out of the signer before any tick, and no identity key active on purpose
    assert old.key_id not in {e.key_id for e in env.signer.entries}
    assert env.store.identity("example.com").active_key is None
    # its signer copies go at once, not after the targets' grace
    assert env.signer.wipe(old.key_id) and not env.signer.wipe("a-key-in-its-grace")
    # the removal alone: no complete write of every other key
    assert env.signer.withdrawn == [{old.key_id}]
    sweeps = env.signer.sweeps
    env.app.lifecycle.tick()
    assert env.signer.sweeps == sweeps + 1  # each tick wipes held copies whose grace ran
    assert env.dns.records[old.record_name] == "v=DKIM1; p="
    assert env.key(old.key_id).state is State.DESTROYED
    (new,) = env.keys("example.com", State.ACTIVE)
    assert [e.key_id for e in env.signer.entries] == [new.key_id]
    # a later rewrite from the log (the emergency's own may have failed) wipes it at once too
    env.app.signing.sync()
    assert env.signer.wipe(old.key_id) and not env.signer.wipe(new.key_id)
    assert "DrainStarted" not in env.types(old.key_id)
    compromised = next(
        s.event for s in env.store.events() if type(s.event).__name__ == "KeyCompromised"
    )
    assert (compromised.actor, compromised.reason) == ("carol", "leaked")
    assert compromised.scope == "domain example.com"  # type: ignore[attr-defined]


def test_standby_waits_verified_then_rotation_is_a_switch(env: UnitEnv) -> None:
    env.app.onboarding.add_identity("example.com", "standby")
    env.app.lifecycle.tick()
    (active,) = env.keys("example.com", State.ACTIVE)
    (standby,) = env.keys("example.com", State.VERIFIED)
    ident = env.store.identity("example.com")
    assert standby.next_action_at == ident.rotate_at
    env.clock.advance(60)
    env.app.lifecycle.tick()
    assert env.key(standby.key_id).state is State.VERIFIED
    env.app.rotation.request("example.com", "dave", "switch now")
    env.app.lifecycle.tick()
    assert env.key(standby.key_id).state is State.ACTIVE
    assert env.key(active.key_id).state is State.DRAINING
    assert "ActivationRequested" in env.types(standby.key_id)
    assert len(env.keys("example.com", State.VERIFIED)) == 1  # the next standby is ready


def test_emergency_promotes_standby_but_all_compromises_it(env: UnitEnv) -> None:
    env.app.onboarding.add_identity("example.com", "standby")
    env.app.onboarding.add_identity("example.org", "standby")
    env.app.lifecycle.tick()
    (standby,) = env.keys("example.com", State.VERIFIED)
    plan = env.app.emergency.plan(Scope(domain="example.com"))
    assert [k.key_id for k in plan.promote] == [standby.key_id]
    env.app.emergency.declare(plan, "op", "leak")
    env.app.lifecycle.tick()
    assert env.key(standby.key_id).state is State.ACTIVE
    everything = env.app.emergency.plan(Scope(everything=True))
    live = [k for k in env.store.list_keys() if k.state not in (State.REVOKED, State.DESTROYED)]
    assert {k.key_id for k in everything.compromise} == {k.key_id for k in live}
    assert everything.promote == []


def test_an_emergency_that_cannot_get_the_signer_lock_says_so_and_records_nothing(
    env: UnitEnv,
) -> None:
    env.app.onboarding.add_identity("example.com", "demo")
    env.app.lifecycle.tick()
    (old,) = env.keys("example.com", State.ACTIVE)
    plan = env.app.emergency.plan(Scope(domain="example.com"))
    env.signer.busy = "the signer lock is held by pid 4242 (rotator run) since 12:00:03 UTC"
    with pytest.raises(SignerLockBusy) as raised:
        env.app.emergency.declare(plan, "carol", "leaked")
    assert str(raised.value) == (
        "the emergency was NOT declared, the keys still sign: the signer lock is held by "
        "pid 4242 (rotator run) since 12:00:03 UTC"
    )
    assert "KeyCompromised" not in env.types(old.key_id)
    assert old.key_id in {e.key_id for e in env.signer.entries}


def test_emergency_scope_matching_nothing_is_refused(env: UnitEnv) -> None:
    env.app.onboarding.add_identity("example.com", "demo")
    env.app.lifecycle.tick()
    with pytest.raises(NotFound, match="matches no managed domain"):
        env.app.emergency.plan(Scope(customer="Nobody"))
    with pytest.raises(NotFound, match="no live key matches"):
        env.app.emergency.plan(Scope(domain="example.com", selector="nosuch"))
    with pytest.raises(NotFound, match="not managed"):
        env.app.emergency.plan(Scope(domain="other.com"))


def test_customer_key_emergency_only_wipes_never_touches_dns(env: UnitEnv) -> None:
    env.app.onboarding.add_customers(
        [CustomerRow("Acme", "acme.com", "customer-key", "demo")], "op"
    )
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    imported = env.app.keyimport.import_key("acme.com", "cust1", pem, "op")
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert imported.fingerprint == hashlib.sha256(raw).hexdigest()
    name = "cust1._domainkey.acme.com."
    env.app.lifecycle.tick()
    assert env.key(imported.key_id).state is State.PUBLISHED
    # the customer publishes it (their own tags, no k=: defaults do not matter)
    env.dns.records[name] = f"v=DKIM1; k=ed25519; t=s; p={base64.b64encode(raw).decode()}"
    env.clock.advance(5)
    env.app.lifecycle.tick()
    assert env.key(imported.key_id).state is State.ACTIVE
    env.app.emergency.declare(env.app.emergency.plan(Scope(customer="Acme")), "op", "customer leak")
    env.app.lifecycle.tick()
    assert env.key(imported.key_id).state is State.DESTROYED
    assert env.dns.records[name].endswith(base64.b64encode(raw).decode())  # not ours to revoke
    assert not env.keystore.exists(imported.key_id)
    assert env.signer.entries == []
    assert "rotation needed from customer" in env.store.identity("acme.com").notice


def test_ping_pong_policy_too_short_for_its_slots_is_refused(env: UnitEnv) -> None:
    fast = dataclasses.replace(demo_policy(rotation={"interval": "20s"}), name="fast")
    # drain window 30 s > 1 x 20 s
    assert "ping-pong" in (pingpong_problem(fast) or "")
    env.policies["fast"] = fast
    with pytest.raises(InputError, match="policy: policy 'fast' rotates every 20s"):
        env.app.onboarding.add_customers(
            [CustomerRow("Acme", "acme.com", "ping-pong", "fast", zone="cname.esp.test")], "op"
        )
    three = demo_policy(pingpong={"slots": ["a", "b", "c"]}, rotation={"interval": "20s"})
    assert pingpong_problem(three) is None  # 2 x 20 s covers the 30 s drain


def test_ping_pong_waits_for_the_cname_and_alternates_slots(env: UnitEnv) -> None:
    env.app.onboarding.add_customers(
        [CustomerRow("Acme", "acme.com", "ping-pong", "demo", zone="cname.esp.test")], "op"
    )
    env.app.lifecycle.tick()
    (first,) = env.keys("acme.com")
    assert (first.selector, first.state) == ("dkim1", State.PUBLISHED)
    assert first.record_name == "dkim1.acme.com.cname.esp.test."
    assert "CNAME dkim1._domainkey.acme.com." in (first.last_error or "")
    env.dns.cnames = {
        f"dkim{n}._domainkey.acme.com.": f"dkim{n}.acme.com.cname.esp.test." for n in (1, 2)
    }
    env.clock.advance(5)
    env.app.lifecycle.tick()
    assert env.key(first.key_id).state is State.ACTIVE
    env.clock.advance(61)
    env.app.lifecycle.tick()
    second = next(k for k in env.keys("acme.com") if k.key_id != first.key_id)
    assert second.selector == "dkim2" and second.state is State.ACTIVE
    env.clock.advance(61)  # dkim1's old key: drained (30 s), revoked, destroyed by now
    env.app.lifecycle.tick()
    env.clock.advance(1)  # the slot freed during that tick: looked at again retry_base later
    env.app.lifecycle.tick()
    third = [k for k in env.keys("acme.com") if k.selector == "dkim1" and k.key_id != first.key_id]
    assert len(third) == 1
    # the reused name waits out the old record's TTL (5 s) after verification
    assert third[0].state is State.VERIFIED
    env.clock.advance(4)
    env.app.lifecycle.tick()
    assert env.key(third[0].key_id).state is State.VERIFIED
    env.clock.advance(2)
    env.app.lifecycle.tick()
    assert env.key(third[0].key_id).state is State.ACTIVE


def test_parallel_key_generation_makes_valid_distinct_keys(env: UnitEnv) -> None:
    env.ctx.pool = WorkerPool(2)
    specs = [(f"k{i:015d}", "rsa", 1024) for i in range(8)]
    keys = env.app.generation.keygen(specs)
    assert len({k.fingerprint for k in keys}) == 8
    for (key_id, _, _), gen in zip(specs, keys, strict=True):
        pem = env.keystore.path(key_id).read_bytes()
        _, _, material = env.keystore.describe(pem)
        assert base64.b64encode(material).decode() == gen.public_key_b64


def _stuck_in(env: UnitEnv, case: str) -> str:
    """Bring a key of example.com into `case` with the fault that holds it there still in
    place; the key's id."""
    if case == "verified standby":
        env.app.onboarding.add_identity("example.com", "standby")
        env.app.lifecycle.tick()
        return env.key_of("example.com", State.VERIFIED).key_id
    if case == "generated, parked":
        env.policies["demo"] = dataclasses.replace(env.policies["demo"], park_after=1)
    env.app.onboarding.add_identity("example.com", "demo")
    if case.startswith("generated"):
        env.dns.fail_publish = "REFUSED"
        env.app.lifecycle.tick()
        key = env.key_of("example.com", State.GENERATED)
        assert key.parked == (case == "generated, parked")
        env.policies["demo"] = demo_policy()  # the emergency's own steps may fail a while
        return key.key_id
    if case == "published":
        _lag(env)
        env.app.lifecycle.tick()
        return env.key_of("example.com", State.PUBLISHED).key_id
    env.app.lifecycle.tick()
    first = env.key_of("example.com", State.ACTIVE)
    if case == "active":
        return first.key_id
    env.clock.advance(61)
    env.app.lifecycle.tick()
    assert env.key(first.key_id).state is State.DRAINING
    if case == "draining, revocation published":
        _lag(env)
        env.clock.advance(31)  # past the drain window: revoked on the primary only
        env.app.lifecycle.tick()
        key = env.key(first.key_id)
        assert key.revocation_published and key.state is State.DRAINING
    return first.key_id


def _lag(env: UnitEnv) -> None:
    real_apply = env.dns.apply

    def apply_lagging(zone: str, changes: Any) -> str:
        env.dns.lagging.update(c.name for c in changes)
        return real_apply(zone, changes)

    env.dns.apply = apply_lagging  # type: ignore[method-assign]


STUCK = [
    "generated",
    "generated, parked",
    "published",
    "verified standby",
    "active",
    "draining",
    "draining, revocation published",
]


@pytest.mark.parametrize("case", STUCK)
def test_an_emergency_revokes_and_destroys_a_key_in_any_state(env: UnitEnv, case: str) -> None:
    key_id = _stuck_in(env, case)
    scope = Scope(domain="example.com", selector=env.key(key_id).selector)
    env.app.emergency.declare(env.app.emergency.plan(scope), "carol", "leaked")
    env.app.lifecycle.tick()  # still broken: nothing illegal, just not done yet
    vars(env.dns).pop("apply", None)  # the secondary catches up again
    env.dns.fail_publish = None
    env.dns.lagging.clear()
    for _ in range(20):
        env.clock.advance(2)
        env.app.lifecycle.tick()
    key = env.key(key_id)
    assert key.state is State.DESTROYED, (key.state, key.next_action, key.last_error)
    # revoked (verified on both servers) before destroyed
    assert {"RevocationPublished", "KeyRevoked", "KeyDestroyed"} <= set(env.types(key_id))
    assert not env.keystore.exists(key_id)
    active = env.store.identity("example.com").active_key
    assert active is not None and active != key_id
    failed = [s.event for s in env.store.events() if isinstance(s.event, ev.ActionFailed)]
    assert not [f for f in failed if "IllegalTransition" in f.error or "not allowed" in f.error]


def emergency_order(env: UnitEnv, kinds: tuple[str, ...]) -> tuple[str, str, list[tuple[str, str]]]:
    """An emergency on one domain, its tick run: (the old key, its replacement, the log's
    events of `kinds` as (type, key_id), in order)."""
    env.app.onboarding.add_identity("example.com", "demo")
    env.app.lifecycle.tick()
    (old,) = env.keys("example.com", State.ACTIVE)
    env.app.emergency.declare(env.app.emergency.plan(Scope(domain="example.com")), "op", "leak")
    env.app.lifecycle.tick()
    (new,) = env.keys("example.com", State.ACTIVE)
    order = [
        (type(s.event).__name__, s.event.key_id)  # type: ignore[attr-defined]
        for s in env.store.events()
        if type(s.event).__name__ in kinds
    ]
    return old.key_id, new.key_id, order


def test_an_emergency_publishes_the_replacement_before_it_verifies_the_revocation(
    env: UnitEnv,
) -> None:
    """Both DNS changes then reach the secondaries together, not one lag after the other."""
    old, new, order = emergency_order(env, ("KeyPublished", "KeyRevoked"))
    assert order[-2:] == [("KeyPublished", new), ("KeyRevoked", old)]


def test_an_emergency_activates_the_replacement_before_it_wipes_the_old_key(
    env: UnitEnv,
) -> None:
    """No mail waits for a wipe; the replacement's verification and activation go first."""
    old, new, order = emergency_order(env, ("KeyActivated", "KeyDestroyed"))
    assert order[-2:] == [("KeyActivated", new), ("KeyDestroyed", old)]
