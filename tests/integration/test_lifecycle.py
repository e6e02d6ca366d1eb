"""A key from generated to destroyed through real BIND nameservers (primary + secondary with
NOTIFY/IXFR), driven by the daemon process on the demo policy, checked by querying each
server directly and by real DKIM signatures verified with dkimpy."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rotator.domain.record import parse_record

from .rotatorenv import RotatorEnv, sign, verifies

POLICIES = Path(__file__).resolve().parents[2] / "policies"
DOMAIN = "example.test"


@pytest.fixture
def env(tmp_path: Path, bind_factory: object) -> Iterator[RotatorEnv]:
    bind = bind_factory(tmp_path / "bind", zones=(DOMAIN,))  # type: ignore[operator]
    renv = RotatorEnv(tmp_path, bind, POLICIES)
    try:
        yield renv
    finally:
        renv.close()


@pytest.mark.timeout(180)
def test_key_lifecycle_end_to_end(env: RotatorEnv) -> None:
    env.cli("domain", "add", DOMAIN, "--policy", "demo", "--actor", "alice")
    env.start()

    # generated -> published -> verified -> active
    first = env.wait_for("first key active", lambda: env.key_in_state(DOMAIN, "active"))
    name = first.record_name
    for ip, (rcode, aa, texts) in env.answers(name).items():
        assert (rcode, aa) == ("NOERROR", True), ip
        assert texts == [first.record], f"{ip} serves {texts}"
    assert parse_record(first.record)["k"] == "rsa"
    key_path = env.workdir / "keys" / f"{first.key_id}.pem"
    assert (key_path.stat().st_mode & 0o777) == 0o600
    key_table = (env.workdir / "opendkim" / "KeyTable").read_text()
    assert f"{first.key_id} {DOMAIN}:{first.selector}:{key_path}" in key_table
    assert f"*@{DOMAIN} {first.key_id}" in (env.workdir / "opendkim" / "SigningTable").read_text()
    in_flight = sign(key_path, DOMAIN, first.selector)
    assert verifies(in_flight, env.bind.secondary, env.bind.port)

    # rotate now: the successor goes active, the first key drains (still published)
    env.cli("rotate", DOMAIN, "--reason", "integration test", "--actor", "bob")
    second = env.wait_for(
        "successor active", lambda: env.key_in_state(DOMAIN, "active", {first.key_id})
    )
    drained = env.key_in_state(DOMAIN, "draining")
    assert drained is not None and drained.key_id == first.key_id
    assert second.selector != first.selector
    assert verifies(in_flight, env.bind.secondary, env.bind.port), "in-flight mail must verify"
    new_mail = sign(env.workdir / "keys" / f"{second.key_id}.pem", DOMAIN, second.selector)
    assert verifies(new_mail, env.bind.secondary, env.bind.port)
    assert first.key_id not in (env.workdir / "opendkim" / "KeyTable").read_text()

    # draining -> revoked (empty p= on every server) -> destroyed (private key wiped)
    env.wait_for("first key destroyed", lambda: env.key_in_state(DOMAIN, "destroyed"), 40)
    for ip, (rcode, aa, texts) in env.answers(name).items():
        assert aa and texts == ["v=DKIM1; p="], f"{ip} serves {texts}"
    assert not verifies(in_flight, env.bind.secondary, env.bind.port), "revoked key verified"
    assert not key_path.exists()

    # tombstone removed after the retention
    env.wait_for(
        "tombstone removed",
        lambda: any(k.tombstone_removed for k in env.keys(DOMAIN)),
        40,
    )
    for ip, (rcode, _aa, texts) in env.answers(name).items():
        assert rcode == "NXDOMAIN" and texts == [], ip

    assert env.stop(signal.SIGTERM) == 0
    log = [json.loads(line) for line in env.cli("log", "--json").stdout.splitlines()]
    first_types = [e["type"] for e in log if e["key_id"] == first.key_id]
    assert first_types == [
        "KeyGenerated", "KeyPublished", "KeyVerified", "KeyActivated", "DrainStarted",
        "RevocationPublished", "KeyRevoked", "KeyDestroyed", "TombstoneRemoved",
    ]
    verified = next(e for e in log if e["type"] == "KeyVerified" and e["key_id"] == first.key_id)
    addresses = sorted(r["address"] for r in verified["payload"]["results"])
    assert addresses == sorted(f"{ip}:{env.bind.port}" for ip in ("127.0.0.1", "127.0.0.2"))
    rotation = next(e for e in log if e["type"] == "RotationRequested")
    assert (rotation["actor"], rotation["reason"]) == ("bob", "integration test")
    assert all("PRIVATE" not in json.dumps(e) for e in log)
    assert "intact" in env.cli("audit", "verify").stdout
    assert "matches" in env.cli("db", "rebuild", "--check").stdout
    status = env.cli("status").stdout
    assert second.selector in status and "active" in status


@pytest.mark.timeout(120)
def test_unreachable_secondary_blocks_activation(env: RotatorEnv) -> None:
    env.cli("domain", "add", DOMAIN, "--policy", "demo")
    env.start()
    first = env.wait_for("first key active", lambda: env.key_in_state(DOMAIN, "active"))
    env.bind.stop_secondary()
    env.cli("rotate", DOMAIN, "--reason", "secondary down")
    stuck = env.wait_for(
        "a failed verification",
        lambda: next((k for k in env.keys(DOMAIN) if k.state.value == "published"
                      and k.attempts >= 2), None),
    )
    assert "127.0.0.2" in (stuck.last_error or "")
    assert env.key_in_state(DOMAIN, "active").key_id == first.key_id  # type: ignore[union-attr]
    failures = [json.loads(x) for x in env.cli("log", "--json", "--type", "ActionFailed")
                .stdout.splitlines()]
    assert failures and all(f["payload"]["action"] == "verify" for f in failures)
    env.bind.start_secondary()
    env.wait_for("successor active after recovery",
                 lambda: env.key_in_state(DOMAIN, "active", {first.key_id}), 60)


@pytest.mark.timeout(60)
def test_second_daemon_refuses_to_start(env: RotatorEnv) -> None:
    env.cli("domain", "add", DOMAIN, "--policy", "demo")
    env.start()
    env.wait_for("first key active", lambda: env.key_in_state(DOMAIN, "active"))
    before = env.store().info()["events"]
    second = env.cli("run", check=False, timeout=30)
    assert second.returncode != 0
    assert "already running" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    time.sleep(0.5)
    assert env.stop() == 0
    assert env.store().info()["events"] >= before
