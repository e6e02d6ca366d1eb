"""Customers leaving, changing policy and delegation mode, with in-memory DNS, a real store
and real key files: the identity stops signing at once, its keys run out the normal way,
nothing rotates after, selectors are never reused, and a change never leaves a gap."""

from __future__ import annotations

import dataclasses

import pytest

from rotator.app import CustomerRow
from rotator.domain import events as ev
from rotator.domain.errors import InputError
from rotator.domain.states import Mode, State

from .clirun import ok, refused, write_config
from .conftest import MakeEnv, UnitEnv
from .fakes import demo_policy

ACME = "acme.example"
ACME_ZONE = "myesp._domainkey.acme.example"
ESP = "fbl.esp.test"
ESP_NS = ("dkim1.esp.test", "dkim2.esp.test")


@pytest.fixture
def env(make_env: MakeEnv) -> UnitEnv:
    rsa_policy = dataclasses.replace(
        demo_policy(key={"algorithm": "rsa", "bits": 1024}), name="rsa"
    )
    return make_env({"rsa": rsa_policy}, esp_nameservers=ESP_NS)


def live(env: UnitEnv, domain: str) -> None:
    env.app.onboarding.add_identity(domain, "demo")
    env.app.lifecycle.tick()
    assert env.key_of(domain, State.ACTIVE)


def removed(env: UnitEnv, domain: str, now: bool = False) -> None:
    plan = env.app.offboarding.plan(env.app.offboarding.domain(domain), now)
    env.app.offboarding.remove(plan, now, "alice", "contract ended")


def test_a_removed_domain_stops_signing_at_once_then_its_key_runs_out(env: UnitEnv) -> None:
    live(env, "a.example")
    live(env, "b.example")
    key = env.key_of("a.example", State.ACTIVE)
    removed(env, "a.example")
    # out of the signer before any tick; b is untouched
    assert {e.domain for e in env.signer.entries} == {"b.example"}
    assert env.key(key.key_id).state is State.DRAINING
    ident = env.store.identity("a.example")
    assert ident.retired_at is not None and ident.rotation_due_at is None
    env.clock.advance(29)  # drain window 3 x 10 s: still published
    env.app.lifecycle.tick()
    assert env.key(key.key_id).state is State.DRAINING
    env.clock.advance(2)
    env.app.lifecycle.tick()
    assert env.key(key.key_id).state is State.DESTROYED
    env.clock.advance(21)
    env.app.lifecycle.tick()
    assert key.record_name not in env.dns.records
    env.clock.advance(3600)  # far past the rotation interval: nothing new for a
    env.app.lifecycle.tick()
    assert [k.key_id for k in env.store.list_keys("a.example")] == [key.key_id]
    types = [type(s.event).__name__ for s in env.store.events() if s.event.actor == "alice"]
    assert types == ["DrainStarted", "IdentityRemoved"]


def test_now_skips_the_drain_and_a_key_on_its_way_is_withdrawn(env: UnitEnv) -> None:
    env.app.onboarding.add_identity("a.example", "standby")
    env.app.lifecycle.tick()
    env.app.lifecycle.tick()
    active = env.key_of("a.example", State.ACTIVE)
    standby = env.key_of("a.example", State.VERIFIED)  # verified, waiting for its turn
    removed(env, "a.example", now=True)
    assert env.key(standby.key_id).state is State.DRAINING
    env.app.lifecycle.tick()
    for key in (active, standby):  # revoked and wiped without waiting for a drain
        assert env.key(key.key_id).state is State.DESTROYED
        assert env.dns.records[key.record_name] == "v=DKIM1; p="  # the tombstone
    kinds = [type(s.event).__name__ for s in env.store.events() if s.event.actor == "alice"]
    assert kinds == ["DrainStarted", "KeyWithdrawn", "IdentityRemoved"]


def test_a_removed_domain_may_come_back_with_fresh_selectors(env: UnitEnv) -> None:
    live(env, "a.example")
    old = {k.selector for k in env.store.list_keys("a.example")}
    removed(env, "a.example", now=True)
    with pytest.raises(InputError, match="already removed"):
        env.app.offboarding.plan(env.app.offboarding.domain("a.example"), False)
    env.app.lifecycle.tick()
    live(env, "a.example")
    new = env.key_of("a.example", State.ACTIVE)
    assert new.selector not in old
    assert env.store.identity("a.example").retired_at is None


def test_an_esp_identity_goes_only_after_the_customers_it_signs_for(env: UnitEnv) -> None:
    env.app.onboarding.add_esp(ESP, "demo")
    row = CustomerRow("Acme", ACME, "third-party", "demo", signing_domain="acme.esp.test")
    rows = [dataclasses.replace(row, zone="esp.test", esp_signature=ESP)]
    env.app.onboarding.add_customers(rows)
    env.app.lifecycle.tick()
    esp_key = env.key_of(ESP, State.ACTIVE)
    assert {e.signing_pattern for e in env.signer.entries if e.key_id == esp_key.key_id} == {
        f"*@{ACME}"
    }
    with pytest.raises(InputError, match=r"feedback-loop signature of acme\.esp\.test"):
        env.app.offboarding.plan(env.app.offboarding.domain(ESP), False)
    plan = env.app.offboarding.plan(env.app.offboarding.customer("Acme"), False)
    env.app.offboarding.remove(plan, False, "alice", "left")
    # the ESP key no longer signs the removed customer's mail
    assert [e for e in env.signer.entries if e.signing_pattern == f"*@{ACME}"] == []
    removed(env, ESP)  # now it may go


def test_the_customer_is_told_what_to_remove_from_their_dns(tmp_path: object) -> None:
    from pathlib import Path

    cfg = write_config(Path(str(tmp_path)))
    text = cfg.read_text().replace(
        "[dns]\n", '[dns]\nesp_nameservers = ["dkim1.esp.test", "dkim2.esp.test"]\n'
    )
    cfg.write_text(text)
    ok(cfg, "customer", "add", "Acme", "--domain", ACME, "--mode", "ns-delegation",
       "--policy", "demo")  # fmt: skip
    out = ok(cfg, "customer", "remove", "Acme", "--reason", "left").output
    assert "removed acme.example" in out
    assert f"{ACME_ZONE}. 86400 IN NS dkim1.esp.test." in out
    line = refused(cfg, "domain", "remove", ACME)
    assert "was already removed" in line


def test_a_policy_change_takes_effect_with_the_next_key(env: UnitEnv) -> None:
    live(env, "a.example")
    first = env.key_of("a.example", State.ACTIVE)
    changed = env.app.changes.set_policy("a.example", "rsa", False, "alice", "stronger")
    assert not changed.rotating and changed.identity.policy == "rsa"
    assert env.key(first.key_id).state is State.ACTIVE  # nothing happens to it
    env.clock.advance(61)
    env.app.lifecycle.tick()
    new = env.key_of("a.example", State.ACTIVE)
    assert (new.algorithm, new.bits, new.policy) == ("rsa", 1024, "rsa")
    assert env.key(first.key_id).state is State.DRAINING


def test_rotate_now_makes_the_next_key_at_once(env: UnitEnv) -> None:
    live(env, "a.example")
    first = env.key_of("a.example", State.ACTIVE)
    changed = env.app.changes.set_policy("a.example", "rsa", True, "alice", "now")
    assert changed.rotating
    env.app.lifecycle.tick()
    assert env.key_of("a.example", State.ACTIVE).algorithm == "rsa"
    assert env.key(first.key_id).state is State.DRAINING


def test_a_mode_change_keeps_the_old_key_until_the_new_path_works(env: UnitEnv) -> None:
    # third-party (d=acme.esp.test) -> NS delegation (d=acme.example): d= moves, so a new
    # identity takes over; the old one signs until the new one's first key is active
    env.app.onboarding.add_customers(
        [CustomerRow("Acme", ACME, "third-party", "demo", signing_domain="acme.esp.test")]
    )
    env.app.lifecycle.tick()
    old = env.key_of("acme.esp.test", State.ACTIVE)
    changed = env.app.changes.set_mode(
        "acme.esp.test", Mode.NS_DELEGATION, None, False, "alice", "move"
    )
    assert changed.identity.identity == ACME and changed.identity.zone == ACME_ZONE
    assert f"{ACME_ZONE}. 86400 IN NS dkim1.esp.test." in changed.records
    env.app.lifecycle.tick()
    new = env.key_of(ACME, State.PUBLISHED)
    assert new.zone == ACME_ZONE and new.last_error.startswith("awaiting customer DNS")
    assert env.key(old.key_id).state is State.ACTIVE  # still signing: no gap
    assert [e.key_id for e in env.signer.entries] == [old.key_id]
    env.dns.delegations[ACME_ZONE] = set(ESP_NS)  # the customer adds the delegation
    env.clock.advance(2)
    env.app.lifecycle.tick()
    assert env.key(new.key_id).state is State.ACTIVE
    assert env.key(old.key_id).state is State.DRAINING
    assert [(e.key_id, e.domain) for e in env.signer.entries] == [(new.key_id, ACME)]
    assert env.store.identity("acme.esp.test").retired_at is not None
    handed = [s.event for s in env.store.events() if isinstance(s.event, ev.IdentityRemoved)]
    assert [(e.identity, e.reason) for e in handed] == [
        ("acme.esp.test", f"handed over to {ACME} (mode ns-delegation)")
    ]


def test_a_mode_change_that_keeps_d_moves_the_next_key(env: UnitEnv) -> None:
    # NS delegation -> ping-pong CNAMEs: d= stays acme.example; the next key goes where
    # the customer's CNAMEs point
    env.app.onboarding.add_customers([CustomerRow("Acme", ACME, "ns-delegation", "demo")])
    env.dns.delegations[ACME_ZONE] = set(ESP_NS)
    env.app.lifecycle.tick()
    old = env.key_of(ACME, State.ACTIVE)
    changed = env.app.changes.set_mode(ACME, Mode.PING_PONG, "cname.esp.test", True, "a", "b")
    assert (changed.identity.mode, changed.identity.zone) == (Mode.PING_PONG, "cname.esp.test")
    assert any("CNAME" in r for r in changed.records)
    kinds = [type(s.event) for s in env.store.events() if s.event.actor == "a"]
    assert kinds == [ev.ModeChanged, ev.RotationRequested]
    env.app.lifecycle.tick()
    new = env.key_of(ACME, State.PUBLISHED)  # waits for the customer's CNAME
    assert new.zone == "cname.esp.test" and env.key(old.key_id).state is State.ACTIVE
