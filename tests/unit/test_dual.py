"""Dual algorithms (RFC 8463): a policy's [key] companion keeps an Ed25519 key active beside
the RSA one, each with its own selector and schedule; both sign the same mail; every signer
format lists both; removing or moving the domain takes both along."""

from __future__ import annotations

import dataclasses

import pytest

from rotator.adapters.signers import exim, jsonfile, opendkim, rspamd
from rotator.adapters.signers.base import render
from rotator.config.policies import check_companion
from rotator.domain.errors import InputError, PolicyError
from rotator.domain.states import State

from .conftest import MakeEnv, UnitEnv
from .fakes import demo_policy

DOMAIN = "example.com"
ED = f"{DOMAIN}~ed25519"


@pytest.fixture
def env(make_env: MakeEnv) -> UnitEnv:
    rsa = dataclasses.replace(
        demo_policy(key={"algorithm": "rsa", "bits": 1024}, rotation={"interval": "60s"}),
        name="dual",
        companion="ed",
    )
    ed = dataclasses.replace(
        demo_policy(rotation={"interval": "300s"}, selector={"template": "e{hh}{mi}{ss}.{esp}"}),
        name="ed",
    )
    return make_env({"dual": rsa, "ed": ed})


def test_both_keys_go_live_and_both_sign(env: UnitEnv) -> None:
    env.app.onboarding.add_identity(DOMAIN, "dual")
    env.app.lifecycle.tick()
    rsa, ed = env.key_of(DOMAIN, State.ACTIVE), env.key_of(ED, State.ACTIVE)
    assert (rsa.algorithm, ed.algorithm) == ("rsa", "ed25519")
    assert rsa.domain == ed.domain == DOMAIN and rsa.selector != ed.selector
    assert sorted((e.algorithm, e.signing_pattern) for e in env.signer.entries) == [
        ("ed25519", f"*@{DOMAIN}"),
        ("rsa", f"*@{DOMAIN}"),
    ]
    assert env.store.identity(ED).companion_of == DOMAIN


def test_each_rotates_on_its_own_schedule(env: UnitEnv) -> None:
    env.app.onboarding.add_identity(DOMAIN, "dual")
    env.app.lifecycle.tick()
    rsa, ed = env.key_of(DOMAIN, State.ACTIVE), env.key_of(ED, State.ACTIVE)
    env.clock.advance(61)  # the RSA interval, not the Ed25519 one
    env.app.lifecycle.tick()
    assert env.key(rsa.key_id).state is State.DRAINING
    assert env.key(ed.key_id).state is State.ACTIVE
    env.clock.advance(240)
    env.app.lifecycle.tick()
    assert env.key(ed.key_id).state is not State.ACTIVE


def test_an_operator_rotation_of_the_domain_rotates_both_keys(env: UnitEnv) -> None:
    env.app.onboarding.add_identity(DOMAIN, "dual")
    env.app.lifecycle.tick()
    rsa, ed = env.key_of(DOMAIN, State.ACTIVE), env.key_of(ED, State.ACTIVE)
    assert env.app.rotation.request(DOMAIN, "alice", "audit").recorded
    ((companion, done),) = env.app.rotation.request_companions(DOMAIN, "alice", "audit")
    assert companion.identity == ED and not isinstance(done, str) and done.recorded
    env.app.lifecycle.tick()
    assert env.key(rsa.key_id).state is State.DRAINING
    assert env.key(ed.key_id).state is State.DRAINING  # long before its 300 s schedule
    assert env.key_of(ED, State.ACTIVE).key_id != ed.key_id


def test_removing_the_domain_takes_both_keys(env: UnitEnv) -> None:
    env.app.onboarding.add_identity(DOMAIN, "dual")
    env.app.lifecycle.tick()
    plan = env.app.offboarding.plan(env.app.offboarding.domain(DOMAIN), False)
    assert len(plan.draining) == 2
    env.app.offboarding.remove(plan, False, "alice", "left")
    assert env.signer.entries == []
    assert env.store.identity(ED).retired_at is not None


def test_a_policy_without_companion_retires_the_second_key(env: UnitEnv) -> None:
    env.policies["single"] = dataclasses.replace(env.policies["dual"], name="single", companion="")
    env.app.onboarding.add_identity(DOMAIN, "dual")
    env.app.lifecycle.tick()
    ed = env.key_of(ED, State.ACTIVE)
    env.app.changes.set_policy(DOMAIN, "single", False, "alice", "one key")
    assert env.key(ed.key_id).state is State.DRAINING
    assert [e.algorithm for e in env.signer.entries] == ["rsa"]
    env.app.changes.set_policy(DOMAIN, "dual", True, "alice", "two again")
    env.app.lifecycle.tick()
    assert env.store.identity(ED).retired_at is None
    assert env.key_of(ED, State.ACTIVE).key_id != ed.key_id


def test_companions_are_checked_when_policies_load() -> None:
    assert demo_policy(key={"algorithm": "rsa", "companion": "ed"}).companion == "ed"
    rsa = dataclasses.replace(demo_policy(key={"algorithm": "rsa"}), name="r", companion="e")
    ed = dataclasses.replace(demo_policy(), name="e")
    with pytest.raises(PolicyError, match="same selector template"):
        check_companion(rsa, {"r": rsa, "e": ed})
    with pytest.raises(PolicyError, match="no policy 'e'"):
        check_companion(rsa, {"r": rsa})
    also_rsa = dataclasses.replace(rsa, name="e", companion="")
    with pytest.raises(PolicyError, match="rsa keys too"):
        check_companion(rsa, {"r": rsa, "e": also_rsa})


def test_an_esp_identity_takes_one_key(env: UnitEnv) -> None:
    with pytest.raises(InputError, match="an ESP signature is one key"):
        env.app.onboarding.add_esp("fbl.esp.test", "dual")


FORMATS = [opendkim.OpenDkimFormat(), rspamd.RspamdFormat(), exim.EximFormat()]


@pytest.mark.parametrize("fmt", [*FORMATS, jsonfile.JsonFormat()])
def test_every_format_lists_both_keys(env: UnitEnv, fmt: object) -> None:
    env.app.onboarding.add_identity(DOMAIN, "dual")
    env.app.lifecycle.tick()
    entries = env.app.signing.entries()
    files = render(fmt, entries, lambda e: env.keystore.path(e.key_id).read_bytes(), "/k")  # type: ignore[arg-type]
    text = b"".join(files.tables.values()).decode()
    for key in (env.key_of(DOMAIN, State.ACTIVE), env.key_of(ED, State.ACTIVE)):
        assert key.selector in text
    assert len(files.keys) == 2
