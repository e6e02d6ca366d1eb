"""A sender a signer format cannot sign exactly (KumoMTA's dkim_sign helper: one own
signature with d= the sender, the same ESP signatures on every sender) is refused at
onboarding, and one already recorded is left out of that target alone: the others are
still written, and an emergency still takes a compromised key out."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import pytest

from rotator.adapters.signers import kumomta
from rotator.adapters.signers.fleet import SignerFleet
from rotator.adapters.signers.probing.prober import Prober
from rotator.adapters.signers.target import SignerTarget, key_reader
from rotator.app import CustomerRow, Scope
from rotator.config.targets import TargetConfig
from rotator.domain.errors import InputError
from rotator.domain.states import State
from rotator.ports import SignerChange, SigningEntry

from .conftest import MakeEnv, UnitEnv

ESP_NS = ("dkim1.esp.test", "dkim2.esp.test")
ESP = "fbl.esp.test"


def entry(key_id: str, d: str, pattern: str, esp: bool = False) -> SigningEntry:
    return SigningEntry(key_id, d, "s1", "/nowhere", pattern, "rsa", esp)


# --- the format ------------------------------------------------------------------------------


def test_kumomta_names_the_senders_it_cannot_sign_and_no_other() -> None:
    good = [entry(f"k{n}", f"d{n}.example", f"*@d{n}.example") for n in range(3)]
    fbl = [entry("fbl", ESP, e.signing_pattern, esp=True) for e in good]
    tp = entry("tp", "acme.esp.test", "*@acme.example")  # third-party d=
    bare = entry("bare", "e.example", "*@e.example")  # no ESP signature, unlike the rest
    assert kumomta.refused([*good, *fbl, tp, bare]) == {
        "*@acme.example": "d=acme.esp.test is not the sender domain acme.example",
        "*@e.example": (
            "ESP signatures none where the other senders carry s1/fbl.esp.test "
            "(additional_signatures go on every message)"
        ),
    }
    assert kumomta.refused([*good, *fbl]) == {}
    # beside what is signed now: one new sender is compared with the senders there
    assert list(kumomta.refused([bare], beside=[good[0], fbl[0]])) == ["*@e.example"]
    assert kumomta.refused([good[1], fbl[1]], beside=[good[0], fbl[0]]) == {}


# --- the target ------------------------------------------------------------------------------


def kumo_target(tmp_path: Path, read: Any) -> SignerTarget:
    cfg = TargetConfig(name="kumo", format="kumomta", directory=tmp_path / "kumo", key_grace=0)
    return SignerTarget(cfg, key_reader(read), Prober(cfg.probe, lambda zone, name: []))


def data(tmp_path: Path) -> dict[str, Any]:
    return tomllib.loads((tmp_path / "kumo" / kumomta.DATA).read_text())


def test_a_sender_the_format_cannot_sign_is_left_out_not_the_others(tmp_path: Path) -> None:
    master = tmp_path / "master"
    master.mkdir()
    for k in ("k1", "k2", "tp"):
        (master / f"{k}.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\n")
    fleet = SignerFleet([kumo_target(tmp_path, lambda k: master / f"{k}.pem")], tmp_path / "l")
    k1, k2 = entry("k1", "a.example", "*@a.example"), entry("k2", "b.example", "*@b.example")
    tp = entry("tp", "c.esp.test", "*@c.example")
    (result,) = fleet.apply(lambda: [k1, k2, tp], check=[k1, tp])
    assert result.ok, result.detail
    assert "not signed here: *@c.example (d=c.esp.test is not the sender domain" in result.detail
    assert sorted(data(tmp_path)["domain"]) == ["a.example", "b.example"]
    keys = tmp_path / "kumo" / "keys"
    assert sorted(p.name for p in keys.iterdir()) == ["k1.pem", "k2.pem"]
    # a compromise: the removal alone, whatever the format thinks of another sender
    (result,) = fleet.withdraw([k1], lambda: [k2, tp], wipe=True)
    assert result.ok, result.detail
    assert sorted(data(tmp_path)["domain"]) == ["b.example"]
    assert sorted(p.name for p in keys.iterdir()) == ["k2.pem"]
    # and a change
    k3 = entry("k3", "a.example", "*@a.example")
    (master / "k3.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\n")
    fleet.trust()
    (result,) = fleet.change(SignerChange((k3,), (), lambda: [k2, k3, tp]))
    assert result.ok, result.detail
    assert sorted(data(tmp_path)["domain"]) == ["a.example", "b.example"]


# --- through the application ------------------------------------------------------------------


@pytest.fixture
def env(make_env: MakeEnv, tmp_path: Path) -> UnitEnv:
    return make_env(esp_nameservers=ESP_NS)


def kumo_fleet(env: UnitEnv) -> SignerFleet:
    return SignerFleet([kumo_target(env.tmp, env.keystore.path)], env.tmp / "signer.lock")


def delegated(env: UnitEnv, customer: str, domain: str, esp: str = "") -> None:
    row = CustomerRow(customer, domain, "ns-delegation", "demo", esp_signature=esp)
    env.app.onboarding.add_customers([row])
    env.dns.delegations[f"myesp._domainkey.{domain}"] = set(ESP_NS)


def test_an_emergency_takes_the_key_out_beside_a_sender_kumomta_cannot_sign(
    env: UnitEnv,
) -> None:
    delegated(env, "Beta", "beta.example")
    delegated(env, "Gamma", "gamma.example")
    # a third-party customer (d= the ESP's domain), recorded as an older database has it:
    # before onboarding asked the targets
    row = CustomerRow("Acme", "acme.example", "third-party", "demo", "acme.esp.test")
    event = env.app.onboarding.customer_event(row, "operator", "")
    env.ctx.recorder.append([event], [])
    env.app.lifecycle.tick()
    beta = env.key_of("beta.example", State.ACTIVE)
    gamma = env.key_of("gamma.example", State.ACTIVE)
    assert env.key_of("acme.esp.test", State.ACTIVE)
    # the KumoMTA target as written before the third-party customer's key was active
    fleet = kumo_fleet(env)
    env.ctx.signer = fleet
    acme = "*@acme.example"
    fleet.apply(lambda: [e for e in env.app.signing.entries() if e.signing_pattern != acme])
    keys = env.tmp / "kumo" / "keys"
    assert (keys / f"{beta.key_id}.pem").exists()
    plan = env.app.emergency.plan(Scope(domain="beta.example"))
    declared = env.app.emergency.declare(plan, "carol", "leaked")
    assert declared.signer_error is None
    assert "not signed here: *@acme.example (d=acme.esp.test" in declared.targets[0].detail
    text = (env.tmp / "kumo" / kumomta.DATA).read_text()
    assert beta.key_id not in text and gamma.key_id in text
    assert not (keys / f"{beta.key_id}.pem").exists()
    assert sorted(data(env.tmp)["domain"]) == ["gamma.example"]
    # a complete write leaves that customer out too, not every other one
    (written,) = env.app.signing.sync()
    assert written.ok and "not signed here: *@acme.example" in written.detail
    assert sorted(data(env.tmp)["domain"]) == ["gamma.example"]


def test_onboarding_refuses_a_sender_a_target_cannot_sign(env: UnitEnv) -> None:
    env.ctx.signer = kumo_fleet(env)
    env.app.onboarding.add_esp(ESP, "demo")
    delegated(env, "Beta", "beta.example", esp=ESP)
    before = env.events()
    third_party = CustomerRow("Acme", "acme.example", "third-party", "demo", "acme.esp.test")
    with pytest.raises(InputError) as caught:
        env.app.onboarding.add_customers([third_party])
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("target kumo (kumomta) cannot sign *@acme.example: d=")
    # no ESP signature where the others carry one: every message gets the same ones
    bare = CustomerRow("Delta", "delta.example", "ns-delegation", "demo")
    with pytest.raises(InputError, match=r"cannot sign \*@delta\.example: ESP signatures none"):
        env.app.onboarding.add_customers([bare])
    with pytest.raises(InputError, match="subdomain patterns"):
        env.app.onboarding.add_identity("sub.example", "demo", signing_pattern="*@*.sub.example")
    assert env.events() == before
    delegated(env, "Gamma", "gamma.example", esp=ESP)  # what it can sign still goes in
    assert env.events() > before


def test_a_second_algorithm_is_refused_where_a_target_signs_one_key_per_sender(
    env: UnitEnv,
) -> None:
    env.policies["ed"] = dataclasses.replace(env.policies["demo"], name="ed")
    env.policies["dual"] = dataclasses.replace(env.policies["demo"], name="dual", companion="ed")
    env.ctx.signer = kumo_fleet(env)
    with pytest.raises(InputError, match=r"cannot sign \*@a\.example: 2 own signatures"):
        env.app.onboarding.add_identity("a.example", "dual")
    assert env.events() == 0
    env.app.onboarding.add_identity("a.example", "demo")
    before = env.events()
    with pytest.raises(InputError, match=r"cannot sign \*@a\.example: 2 own signatures"):
        env.app.changes.set_policy("a.example", "dual", False, "alice", "")
    assert env.events() == before
