"""The daemon on a PostgreSQL database (tests/support/postgres.py's private server) against
real BIND nameservers: a key through its whole lifecycle, the one-daemon lock held on the
server, the audit trail intact and the projection matching the log afterwards; and an
SQLite installation moved there with `db migrate`, its daemon going on from where it was."""

from __future__ import annotations

import json
import signal

import pytest

from tests.support.lifecycle import LIFECYCLE_EVENTS

from .conftest import DOMAIN
from .rotatorenv import RotatorEnv

pytestmark = pytest.mark.integration


def audited(env: RotatorEnv) -> str:
    """`audit verify` and `db rebuild --check` both clean; the audit head."""
    verified = env.cli("audit", "verify").stdout
    assert "hash chain intact" in verified and "carry valid MACs" in verified
    assert "the log agrees with every line of the anchor" in verified
    assert "projection matches the event log" in env.cli("db", "rebuild", "--check").stdout
    return env.cli("audit", "head").stdout.strip()


@pytest.mark.timeout(240)
def test_key_lifecycle_on_postgresql(env: RotatorEnv, postgres_url: str) -> None:
    env.use_database(postgres_url)
    env.cli("init")
    env.cli("domain", "add", DOMAIN, "--policy", "demo", "--actor", "alice")
    env.start()
    first = env.wait_for("first key active", lambda: env.key_in_state(DOMAIN, "active"))
    for ip, (rcode, aa, texts) in env.answers(first.record_name).items():
        assert (rcode, aa, texts) == ("NOERROR", True, [first.record]), ip

    # the one-daemon lock is the server's: a second daemon is refused, naming the first
    second = env.cli("run", check=False, timeout=30)
    assert second.returncode != 0
    assert env.daemon is not None
    assert f"another rotator daemon (rotator daemon {env.daemon.pid}@" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1

    env.cli("rotate", DOMAIN, "--reason", "integration test", "--actor", "bob")
    env.wait_for("successor active", lambda: env.key_in_state(DOMAIN, "active", {first.key_id}))
    env.wait_for("first key destroyed", lambda: env.key_in_state(DOMAIN, "destroyed"), 60)
    for which, (_rcode, aa, texts) in env.answers(first.record_name).items():
        assert aa and texts == ["v=DKIM1; p="], f"{which} serves {texts}"
    assert not (env.workdir / "keys" / f"{first.key_id}.pem").exists()
    env.wait_for(
        "tombstone removed", lambda: any(k.tombstone_removed for k in env.list_keys(DOMAIN)), 60
    )
    assert env.stop(signal.SIGTERM) == 0

    log = [json.loads(line) for line in env.cli("log", "--json").stdout.splitlines()]
    steps = [e["type"] for e in log if e["key_id"] == first.key_id and e["type"] != "ActionFailed"]
    assert steps == list(LIFECYCLE_EVENTS)
    head = audited(env)
    assert head.split()[0] == str(log[-1]["position"])
    # the files that go with the database are in the config's directory
    assert (env.workdir / "anchor.log").read_text().splitlines()[-1].startswith(head)
    assert not (env.workdir / "rotator.db").exists()


@pytest.mark.timeout(240)
def test_an_sqlite_installation_moves_to_postgresql(env: RotatorEnv, postgres_url: str) -> None:
    env.cli("domain", "add", DOMAIN, "--policy", "demo", "--actor", "alice")
    env.start()
    first = env.wait_for("first key active", lambda: env.key_in_state(DOMAIN, "active"))
    refused = env.cli("db", "migrate", "--to", postgres_url, check=False)
    assert "already running" in refused.stderr  # the daemon first
    assert env.stop() == 0
    head = audited(env)

    moved = env.cli("db", "migrate", "--to", postgres_url).stdout
    assert f"audit head {head}, the same as before" in moved
    env.use_database(postgres_url)
    text = env.config.read_text()
    env.config.write_text(f'state_dir = "{env.workdir}"\n{text}')
    assert audited(env) == head

    env.start()  # the demo policy rotates every 20 s: the next key goes on there
    second = env.wait_for(
        "successor active", lambda: env.key_in_state(DOMAIN, "active", {first.key_id}), 90
    )
    assert env.answers(second.record_name)["secondary"][2] == [second.record]
    assert env.stop() == 0
    after = audited(env)
    assert int(after.split()[0]) > int(head.split()[0])
    again = env.cli("db", "migrate", "--to", postgres_url, check=False)
    assert again.returncode == 1
    assert "already; migrate moves an SQLite database" in again.stderr
