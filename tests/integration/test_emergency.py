"""Emergency rotation against real BIND servers: compromised keys leave the signer at once,
are revoked (empty p=) on every nameserver without draining, and are replaced; a standby
key makes it a switch. Mail signed before the emergency stops verifying; mail signed with
the replacement verifies."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rotator.demo.localdns import BindPair
from tests.support.cli import customer_add

from .conftest import POLICIES
from .rotatorenv import RotatorEnv, sign

pytestmark = pytest.mark.integration

DOMAIN = "example.test"
OTHER = "other.test"


@pytest.fixture
def env2(tmp_path: Path, bind_factory: Callable[..., BindPair]) -> Iterator[RotatorEnv]:
    renv = RotatorEnv(tmp_path, bind_factory(tmp_path / "bind", zones=(DOMAIN, OTHER)), POLICIES)
    try:
        yield renv
    finally:
        renv.close()


def revoked_everywhere(env: RotatorEnv, name: str) -> bool:
    return all(texts == ["v=DKIM1; p="] for _, _, texts in env.answers(name).values())


def events(env: RotatorEnv, *args: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in env.cli("log", "--json", *args).stdout.splitlines()]


@pytest.mark.timeout(120)
def test_domain_emergency_revokes_at_once_and_replaces(env2: RotatorEnv) -> None:
    env = env2
    env.cli("domain", "add", DOMAIN, "--policy", "demo")
    env.start()
    old = env.wait_for("key active", lambda: env.key_in_state(DOMAIN, "active"))
    before = sign(env.workdir / "keys" / f"{old.key_id}.pem", DOMAIN, old.selector)
    assert env.verifies(before)

    out = env.cli(
        "rotate", DOMAIN, "--emergency", "--reason", "key leaked in a backup", "--actor", "carol"
    )
    assert "daemon (pid" in out.stdout  # the running daemon was woken up
    env.wait_for(
        "old key revoked on every nameserver", lambda: revoked_everywhere(env, old.record_name), 30
    )
    new = env.wait_for(
        "replacement active", lambda: env.key_in_state(DOMAIN, "active", {old.key_id}), 30
    )
    assert old.key_id not in (env.workdir / "opendkim" / "KeyTable").read_text()
    assert not env.verifies(before), "mail signed with the compromised key must fail"
    after = sign(env.workdir / "keys" / f"{new.key_id}.pem", DOMAIN, new.selector)
    assert env.verifies(after)
    env.wait_for("old key destroyed", lambda: env.key_in_state(DOMAIN, "destroyed"), 30)
    log = events(env, "--key", old.key_id)
    compromised = next(e for e in log if e["type"] == "KeyCompromised")
    assert (compromised["actor"], compromised["reason"]) == ("carol", "key leaked in a backup")
    assert [e["type"] for e in log if e["type"] == "DrainStarted"] == []  # no drain
    # every event the emergency set off is the operator's, with their reason
    steps = log[log.index(compromised) :] + events(env, "--key", new.key_id)
    assert {(e["actor"], e["reason"]) for e in steps if e["type"] != "ActionFailed"} == {
        ("carol", "key leaked in a backup"),
        ("carol", "emergency: key leaked in a backup"),
    }
    assert env.stop() == 0


@pytest.mark.timeout(120)
def test_standby_key_makes_the_emergency_a_switch(env2: RotatorEnv) -> None:
    env = env2
    env.cli("domain", "add", DOMAIN, "--policy", "demo-standby")
    env.start()
    old = env.wait_for("key active", lambda: env.key_in_state(DOMAIN, "active"))
    standby = env.wait_for("standby verified", lambda: env.key_in_state(DOMAIN, "verified"))
    assert standby.next_action_at is not None and standby.next_action_at > standby.since
    env.cli("rotate", DOMAIN, "--emergency", "--reason", "leak", "--wait", "30")
    new = env.wait_for("standby active", lambda: env.key_in_state(DOMAIN, "active", {old.key_id}))
    assert new.key_id == standby.key_id  # switched, not generated
    env.wait_for("old key revoked", lambda: revoked_everywhere(env, old.record_name), 30)
    # and a fresh standby is prepared behind it
    env.wait_for("next standby", lambda: env.key_in_state(DOMAIN, "verified"), 30)
    assert env.stop() == 0


@pytest.mark.timeout(180)
def test_scopes_customer_policy_all_and_refusals(env2: RotatorEnv) -> None:
    env = env2
    env.cli("domain", "add", DOMAIN, "--policy", "demo")
    env.cli("domain", "add", OTHER, "--policy", "demo-ed25519")
    env.cli(
        *customer_add(
            "Beta", "beta.example", "third-party", signing_domain=f"beta.{OTHER}", zone=OTHER
        ),
    )
    # no daemon in this test: the CLI does the work itself (run --once, rotate --emergency)
    env.wait_for(
        "three keys active",
        lambda: (
            env.cli("run", "--once")
            and len([k for k in env.list_keys() if k.state.value == "active"]) == 3
        ),
    )
    count = env.store().info()["events"]

    # refusals change nothing
    for args, words in [
        (("--all",), "add --yes"),
        (("--customer", "Nobody"), "matches no managed domain"),
        ((DOMAIN, "--selector", "nosuch"), "no live key matches"),
        ((DOMAIN,), None),  # without --reason
    ]:
        extra = () if words is None else ("--reason", "x")
        bad = env.cli("rotate", "--emergency", *args, *extra, check=False)
        assert bad.returncode != 0, args
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        if words:
            assert words in bad.stderr
    dry = env.cli("rotate", "--emergency", "--all", "--dry-run", "--reason", "drill")
    assert "dry run: nothing changed" in dry.stdout and DOMAIN in dry.stdout
    assert env.store().info()["events"] == count

    def active(domain: str) -> str:
        key = env.key_in_state(domain, "active")
        assert key is not None
        return key.key_id

    a, o, b = active(DOMAIN), active(OTHER), active(f"beta.{OTHER}")
    sel = env.store().key(a).selector
    env.cli("rotate", "--emergency", DOMAIN, "--selector", sel, "--reason", "one key")
    assert active(DOMAIN) != a and active(OTHER) == o and active(f"beta.{OTHER}") == b
    a = active(DOMAIN)
    env.cli("rotate", "--emergency", "--customer", "Beta", "--reason", "beta leak")
    assert active(f"beta.{OTHER}") != b and active(DOMAIN) == a and active(OTHER) == o
    env.cli("rotate", "--emergency", "--policy", "demo-ed25519", "--reason", "ed leak")
    assert active(OTHER) != o and active(DOMAIN) == a
    env.cli("rotate", "--emergency", "--all", "--yes", "--reason", "whole key store leaked")
    assert active(DOMAIN) != a
    compromised = events(env, "--type", "KeyCompromised")
    assert {e["payload"]["scope"] for e in compromised} == {
        f"selector {sel} of {DOMAIN}",
        "customer Beta",
        "policy demo-ed25519",
        "all keys",
    }
    for key in env.list_keys():
        if key.compromised:
            assert key.state.value in ("revoked", "destroyed"), key
            assert revoked_everywhere(env, key.record_name)
    assert "intact" in env.cli("audit", "verify").stdout
    assert "matches" in env.cli("db", "rebuild", "--check").stdout
