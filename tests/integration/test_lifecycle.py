"""A key from generated to destroyed through real BIND nameservers (primary + secondary with
NOTIFY/IXFR), driven by the daemon process on the demo policy, checked by querying each
server directly and by real DKIM signatures verified with dkimpy."""

from __future__ import annotations

import json
import signal
import time

import pytest

from rotator.domain.record import parse_record
from tests.support.lifecycle import LIFECYCLE_EVENTS

from .conftest import DOMAIN
from .rotatorenv import RotatorEnv, sign

pytestmark = pytest.mark.integration


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
    assert env.verifies(in_flight)

    # rotate now: the successor goes active, the first key drains (still published)
    env.cli("rotate", DOMAIN, "--reason", "integration test", "--actor", "bob")
    second = env.wait_for(
        "successor active", lambda: env.key_in_state(DOMAIN, "active", {first.key_id})
    )
    drained = env.key_in_state(DOMAIN, "draining")
    assert drained is not None and drained.key_id == first.key_id
    assert second.selector != first.selector
    assert env.verifies(in_flight), "in-flight mail must verify"
    new_mail = sign(env.workdir / "keys" / f"{second.key_id}.pem", DOMAIN, second.selector)
    assert env.verifies(new_mail)
    assert first.key_id not in (env.workdir / "opendkim" / "KeyTable").read_text()

    # draining -> revoked (empty p= on every server) -> destroyed (private key wiped)
    env.wait_for("first key destroyed", lambda: env.key_in_state(DOMAIN, "destroyed"), 40)
    for which, (_rcode, aa, texts) in env.answers(name).items():
        assert aa and texts == ["v=DKIM1; p="], f"{which} serves {texts}"
    assert not env.verifies(in_flight), "revoked key verified"
    assert not key_path.exists()

    # tombstone removed after the retention
    env.wait_for(
        "tombstone removed",
        lambda: any(k.tombstone_removed for k in env.list_keys(DOMAIN)),
        40,
    )
    # the deletion reaches the secondary by NOTIFY/IXFR shortly after the primary took it
    env.wait_for(
        "tombstone gone from both servers",
        lambda: all(a[0] == "NXDOMAIN" and a[2] == [] for a in env.answers(name).values()),
        10,
    )

    assert env.stop(signal.SIGTERM) == 0
    log = [json.loads(line) for line in env.cli("log", "--json").stdout.splitlines()]
    first_events = [e for e in log if e["key_id"] == first.key_id]
    # a secondary that has not caught up yet is a recorded, retried failure, never a step
    retries = [e for e in first_events if e["type"] == "ActionFailed"]
    assert all(e["payload"]["action"] in ("verify", "verify-revocation") for e in retries)
    first_types = [e["type"] for e in first_events if e["type"] != "ActionFailed"]
    assert first_types == list(LIFECYCLE_EVENTS)
    verified = next(e for e in log if e["type"] == "KeyVerified" and e["key_id"] == first.key_id)
    addresses = sorted(r["address"] for r in verified["payload"]["results"])
    assert addresses == sorted(f"{ip}:{port}" for ip, port in env.bind.addresses)
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
        lambda: next(
            (k for k in env.list_keys(DOMAIN) if k.state.value == "published" and k.attempts > 1),
            None,
        ),
    )
    ip, port = env.bind.server("secondary")
    assert f"{ip}:{port}" in (stuck.last_error or "")
    assert env.key_in_state(DOMAIN, "active").key_id == first.key_id
    failures = [
        json.loads(x)
        for x in env.cli("log", "--json", "--type", "ActionFailed").stdout.splitlines()
    ]
    assert failures and all(f["payload"]["action"] == "verify" for f in failures)
    env.bind.start_secondary()
    env.wait_for(
        "successor active after recovery",
        lambda: env.key_in_state(DOMAIN, "active", {first.key_id}),
        60,
    )


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


@pytest.mark.timeout(90)
def test_ed25519_key_signs_mail_that_verifies_through_dns(env: RotatorEnv) -> None:
    env.cli("domain", "add", DOMAIN, "--policy", "demo-ed25519")
    env.start()
    key = env.wait_for("ed25519 key active", lambda: env.key_in_state(DOMAIN, "active"))
    tags = parse_record(key.record)
    assert (tags["k"], tags["h"], tags["t"]) == ("ed25519", "sha256", "s")
    assert len(tags["p"]) == 44  # 32 raw bytes, base64 (RFC 8463 section 4.2)
    signed = sign(env.workdir / "keys" / f"{key.key_id}.pem", DOMAIN, key.selector, "ed25519")
    assert env.verifies(signed)
    assert env.stop() == 0


@pytest.mark.timeout(60)
def test_rejected_update_is_recorded_and_never_moves_the_key(env: RotatorEnv) -> None:
    cfg = env.config.read_text()
    wrong = "YSAzMi1ieXRlIHNlY3JldCB0aGF0IGlzIHdyb25nISE="  # 32 bytes, but not the server's
    env.config.write_text(cfg.replace(env.bind.tsig_secret, wrong))
    env.cli("domain", "add", DOMAIN, "--policy", "demo")
    env.start()
    failed = env.wait_for(
        "two failed publications",
        lambda: next((k for k in env.list_keys(DOMAIN) if k.attempts >= 2), None),
    )
    assert failed.state.value == "generated"
    assert "BADSIG" in (failed.last_error or "")
    assert env.answers(failed.record_name)["primary"][2] == []
    assert env.stop() == 0
    errors = [
        json.loads(x)
        for x in env.cli("log", "--json", "--type", "ActionFailed").stdout.splitlines()
    ]
    assert errors[0]["payload"]["action"] == "publish"
    retry_gap = [e["payload"]["retry_at"] for e in errors[:2]]
    assert retry_gap[0] < retry_gap[1]  # backoff: the second retry is later
