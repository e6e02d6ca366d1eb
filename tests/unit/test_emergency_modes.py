"""Emergency rotation, standby keys and the CNAME-based modes through the service, with
in-memory DNS, a real SQLite store and real key files."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from rotator.adapters.keystore_fs import FsKeyStore
from rotator.adapters.store_sqlite import SqliteEventStore
from rotator.domain.errors import InputError, NotFound
from rotator.domain.policy import pingpong_problem
from rotator.domain.states import State
from rotator.service import CustomerRow, Scope, Service

from .fakes import FakeDns, FakeSigner, ManualClock, demo_policy


class CnameDns(FakeDns):
    """FakeDns plus the customer's CNAMEs."""

    def __init__(self) -> None:
        super().__init__()
        self.cnames: dict[str, str] = {}

    def cname(self, name: str) -> str | None:
        return self.cnames.get(name)


class Env:
    def __init__(self, tmp: Path, **policies: Any) -> None:
        self.clock = ManualClock()
        self.dns = CnameDns()
        self.signer = FakeSigner()
        self.store = SqliteEventStore(tmp / "rotator.db")
        self.keystore = FsKeyStore(tmp / "keys")
        self.policies = {"demo": demo_policy(), **policies}
        self.svc = Service(
            self.store, self.get, self.dns, self.dns, self.keystore, self.signer, self.clock
        )

    def get(self, name: str) -> Any:
        if name not in self.policies:
            raise NotFound(f"policy {name!r} not found")
        return self.policies[name]

    def keys(self, domain: str, state: State | None = None) -> list[Any]:
        return [
            k
            for k in self.store.list_keys()
            if k.domain == domain and (state is None or k.state is state)
        ]

    def types(self, key_id: str) -> list[str]:
        return [
            type(s.event).__name__
            for s in self.store.events()
            if getattr(s.event, "key_id", None) == key_id
        ]


@pytest.fixture
def env(tmp_path: Path) -> Env:
    standby = demo_policy(rotation={"interval": "1h"}, standby={"enabled": True})
    return Env(tmp_path, standby=dataclasses.replace(standby, name="standby"))


def test_emergency_leaves_signer_at_once_then_revokes_without_drain(env: Env) -> None:
    env.svc.add_identity("example.com", "demo")
    env.svc.tick()
    (old,) = env.keys("example.com", State.ACTIVE)
    plan = env.svc.emergency_plan(Scope(domain="example.com"))
    assert [k.key_id for k in plan.compromise] == [old.key_id] and plan.promote == []
    env.svc.emergency(plan, "carol", "leaked")
    # out of the signer before any tick, and no identity key active on purpose
    assert old.key_id not in {e.key_id for e in env.signer.entries}
    assert env.store.identity("example.com").active_key is None  # type: ignore[union-attr]
    env.svc.tick()
    assert env.dns.records[old.record_name] == "v=DKIM1; p="
    assert env.store.key(old.key_id).state is State.DESTROYED  # type: ignore[union-attr]
    (new,) = env.keys("example.com", State.ACTIVE)
    assert [e.key_id for e in env.signer.entries] == [new.key_id]
    assert "DrainStarted" not in env.types(old.key_id)
    compromised = next(
        s.event for s in env.store.events() if type(s.event).__name__ == "KeyCompromised"
    )
    assert (compromised.actor, compromised.reason) == ("carol", "leaked")
    assert compromised.scope == "domain example.com"  # type: ignore[attr-defined]


def test_standby_waits_verified_then_rotation_is_a_switch(env: Env) -> None:
    env.svc.add_identity("example.com", "standby")
    env.svc.tick()
    (active,) = env.keys("example.com", State.ACTIVE)
    (standby,) = env.keys("example.com", State.VERIFIED)
    ident = env.store.identity("example.com")
    assert standby.next_action_at == ident.rotate_at  # type: ignore[union-attr]
    env.clock.advance(60)
    env.svc.tick()
    assert env.store.key(standby.key_id).state is State.VERIFIED  # type: ignore[union-attr]
    env.svc.request_rotation("example.com", "dave", "switch now")
    env.svc.tick()
    assert env.store.key(standby.key_id).state is State.ACTIVE  # type: ignore[union-attr]
    assert env.store.key(active.key_id).state is State.DRAINING  # type: ignore[union-attr]
    assert "ActivationRequested" in env.types(standby.key_id)
    assert len(env.keys("example.com", State.VERIFIED)) == 1  # the next standby is ready


def test_emergency_promotes_standby_but_all_compromises_it(env: Env) -> None:
    env.svc.add_identity("example.com", "standby")
    env.svc.add_identity("example.org", "standby")
    env.svc.tick()
    (standby,) = env.keys("example.com", State.VERIFIED)
    plan = env.svc.emergency_plan(Scope(domain="example.com"))
    assert [k.key_id for k in plan.promote] == [standby.key_id]
    env.svc.emergency(plan, "op", "leak")
    env.svc.tick()
    assert env.store.key(standby.key_id).state is State.ACTIVE  # type: ignore[union-attr]
    everything = env.svc.emergency_plan(Scope(everything=True))
    live = [k for k in env.store.list_keys() if k.state not in (State.REVOKED, State.DESTROYED)]
    assert {k.key_id for k in everything.compromise} == {k.key_id for k in live}
    assert everything.promote == []


def test_emergency_scope_matching_nothing_is_refused(env: Env) -> None:
    env.svc.add_identity("example.com", "demo")
    env.svc.tick()
    with pytest.raises(NotFound, match="matches no managed domain"):
        env.svc.emergency_plan(Scope(customer="Nobody"))
    with pytest.raises(NotFound, match="no live key matches"):
        env.svc.emergency_plan(Scope(domain="example.com", selector="nosuch"))
    with pytest.raises(NotFound, match="not managed"):
        env.svc.emergency_plan(Scope(domain="other.com"))


def test_customer_key_emergency_only_wipes_never_touches_dns(env: Env) -> None:
    env.svc.add_customers([CustomerRow("Acme", "acme.com", "customer-key", "demo")], "op")
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    imported = env.svc.import_key("acme.com", "cust1", pem, "op")
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert imported.fingerprint == hashlib.sha256(raw).hexdigest()
    name = "cust1._domainkey.acme.com."
    env.svc.tick()
    assert env.store.key(imported.key_id).state is State.PUBLISHED  # type: ignore[union-attr]
    # the customer publishes it (their own tags, no k=: defaults do not matter)
    env.dns.records[name] = f"v=DKIM1; k=ed25519; t=s; p={base64.b64encode(raw).decode()}"
    env.clock.advance(5)
    env.svc.tick()
    assert env.store.key(imported.key_id).state is State.ACTIVE  # type: ignore[union-attr]
    env.svc.emergency(env.svc.emergency_plan(Scope(customer="Acme")), "op", "customer leak")
    env.svc.tick()
    assert env.store.key(imported.key_id).state is State.DESTROYED  # type: ignore[union-attr]
    assert env.dns.records[name].endswith(base64.b64encode(raw).decode())  # not ours to revoke
    assert not env.keystore.exists(imported.key_id)
    assert env.signer.entries == []
    assert "rotation needed from customer" in env.store.identity("acme.com").notice  # type: ignore[union-attr]


def test_ping_pong_policy_too_short_for_its_slots_is_refused(env: Env) -> None:
    fast = dataclasses.replace(demo_policy(rotation={"interval": "20s"}), name="fast")
    # drain window 30 s > 1 x 20 s
    assert "ping-pong" in (pingpong_problem(fast) or "")
    env.policies["fast"] = fast
    with pytest.raises(InputError, match="policy: policy 'fast' rotates every 20s"):
        env.svc.add_customers(
            [CustomerRow("Acme", "acme.com", "ping-pong", "fast", zone="cname.esp.test")], "op"
        )
    three = demo_policy(pingpong={"slots": ["a", "b", "c"]}, rotation={"interval": "20s"})
    assert pingpong_problem(three) is None  # 2 x 20 s covers the 30 s drain


def test_ping_pong_waits_for_the_cname_and_alternates_slots(env: Env) -> None:
    env.svc.add_customers(
        [CustomerRow("Acme", "acme.com", "ping-pong", "demo", zone="cname.esp.test")], "op"
    )
    env.svc.tick()
    (first,) = env.keys("acme.com")
    assert (first.selector, first.state) == ("dkim1", State.PUBLISHED)
    assert first.record_name == "dkim1.acme.com.cname.esp.test."
    assert "CNAME dkim1._domainkey.acme.com." in (first.last_error or "")
    env.dns.cnames = {
        f"dkim{n}._domainkey.acme.com.": f"dkim{n}.acme.com.cname.esp.test." for n in (1, 2)
    }
    env.clock.advance(5)
    env.svc.tick()
    assert env.store.key(first.key_id).state is State.ACTIVE  # type: ignore[union-attr]
    env.clock.advance(61)
    env.svc.tick()
    second = next(k for k in env.keys("acme.com") if k.key_id != first.key_id)
    assert second.selector == "dkim2" and second.state is State.ACTIVE
    env.clock.advance(61)  # dkim1's old key: drained (30 s), revoked, destroyed by now
    env.svc.tick()
    env.clock.advance(1)  # the slot freed during that tick: looked at again retry_base later
    env.svc.tick()
    third = [k for k in env.keys("acme.com") if k.selector == "dkim1" and k.key_id != first.key_id]
    assert len(third) == 1
    # the reused name waits out the old record's TTL (5 s) after verification
    assert third[0].state is State.VERIFIED
    env.clock.advance(4)
    env.svc.tick()
    assert env.store.key(third[0].key_id).state is State.VERIFIED  # type: ignore[union-attr]
    env.clock.advance(2)
    env.svc.tick()
    assert env.store.key(third[0].key_id).state is State.ACTIVE  # type: ignore[union-attr]


def test_parallel_key_generation_makes_valid_distinct_keys(env: Env) -> None:
    env.svc.workers = 2
    specs = [(f"k{i:015d}", "rsa", 1024) for i in range(8)]
    keys = env.svc.keygen(specs)
    assert len({k.fingerprint for k in keys}) == 8
    for (key_id, _, _), gen in zip(specs, keys, strict=True):
        pem = env.keystore.path(key_id).read_bytes()
        _, _, material = env.keystore.describe(pem)
        assert base64.b64encode(material).decode() == gen.public_key_b64
