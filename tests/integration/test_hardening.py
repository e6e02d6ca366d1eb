"""Broken surroundings against real BIND servers: read-only mounts, a key directory that is
not ours, a stale secondary during an emergency, a daemon killed while it generates keys.
Every command answers with one line (or an exact to-do list) and nothing is lost."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rotator.adapters.store.sqlite import SqliteEventStore
from rotator.bootstrap import build
from rotator.config.settings import load_config

from .conftest import DOMAIN
from .rotatorenv import SUBPROCESS_ENV, RotatorEnv

pytestmark = pytest.mark.integration

needs_mounts = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="read-only bind mounts need root and unshare",
)


def cli_with_ro(env: RotatorEnv, readonly: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a private mount namespace where `readonly` is mounted read-only."""
    script = 'mount --bind -o ro "$1" "$1" && shift && exec "$@"'
    return subprocess.run(
        [
            *("unshare", "-m", "sh", "-c", script, "sh", str(readonly), sys.executable),
            *("-m", "rotator.cli", "--config", str(env.config), *args),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=SUBPROCESS_ENV,
        cwd=env.workdir,
    )


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def events(env: RotatorEnv, *args: str) -> list[dict[str, object]]:
    return [json.loads(x) for x in env.cli("log", "--json", *args).stdout.splitlines()]


def activate_one(env: RotatorEnv, policy: str = "demo-ed25519") -> str:
    """DOMAIN with an active key, without a daemon; its key id."""
    env.cli("domain", "add", DOMAIN, "--policy", policy)
    key = env.wait_for(
        "key active",
        lambda: env.cli("run", "--once", check=False) and env.key_in_state(DOMAIN, "active"),
    )
    return str(key.key_id)


@needs_mounts
@pytest.mark.timeout(180)
def test_read_only_database_is_one_line_for_every_writer(env: RotatorEnv) -> None:
    key_id = activate_one(env)
    db = env.workdir / "rotator.db"
    writers: tuple[tuple[str, ...], ...] = (
        ("domain", "add", f"other.{DOMAIN}", "--zone", DOMAIN, "--policy", "demo"),
        ("rotate", DOMAIN),
    )
    for args in writers:
        line = one_error_line(cli_with_ro(env, db, *args))
        assert str(db) in line and "read-only" in line, line
    env.cli("rotate", DOMAIN)  # something due, so that a tick has to write
    before = len(events(env))
    line = one_error_line(cli_with_ro(env, db, "run", "--once"))
    assert str(db) in line and "read-only" in line, line
    # the emergency takes the key out of the signer first, whatever fails after
    proc = cli_with_ro(env, db, "rotate", "--emergency", DOMAIN, "--reason", "leak")
    line = one_error_line(proc)
    assert "the compromise was NOT recorded" in line and "taken out of the signer" in line
    assert key_id not in (env.workdir / "opendkim" / "KeyTable").read_text()
    # readers still read
    readers: tuple[tuple[str, ...], ...] = (("status",), ("log",), ("audit", "verify"))
    for reader in readers:
        proc = cli_with_ro(env, db, *reader)
        assert proc.returncode == 0, proc.stderr
    assert len(events(env)) == before


@needs_mounts
@pytest.mark.timeout(180)
def test_key_dir_on_a_read_only_mount(env: RotatorEnv) -> None:
    key_id = activate_one(env)
    keys = env.workdir / "keys"
    for args in (("status",), ("log",), ("audit", "verify"), ("customer", "list")):
        proc = cli_with_ro(env, keys, *args)
        assert proc.returncode == 0, proc.stderr
    # an emergency still takes the key out of the signer and revokes it; what it cannot
    # do (wipe the key, make a replacement) it names, with a non-zero exit
    proc = cli_with_ro(
        env, keys, "rotate", "--emergency", DOMAIN, "--reason", "leak", "--wait", "8"
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert key_id not in (env.workdir / "opendkim" / "KeyTable").read_text()
    todo = [ln for ln in proc.stdout.splitlines() if ln.startswith("  still to do: ")]
    assert any("destroy not done yet" in ln and "Read-only file system" in ln for ln in todo)
    assert any("no active key yet: cannot generate a key" in ln for ln in todo)
    assert "no daemon is running" in proc.stdout
    old = next(k for k in env.list_keys(DOMAIN) if k.key_id == key_id)
    answers = env.answers(old.record_name)
    assert all(texts == ["v=DKIM1; p="] for _, _, texts in answers.values())


@pytest.mark.timeout(120)
def test_key_dir_of_another_user_refuses_writers_not_readers(env: RotatorEnv) -> None:
    if os.geteuid() != 0:
        pytest.skip("changing a directory's owner needs root")
    activate_one(env)
    keys = env.workdir / "keys"
    os.chown(keys, 65534, 65534)  # nobody
    try:
        line = one_error_line(
            env.cli("domain", "add", "other.test", "--policy", "demo", check=False)
        )
        assert f"{keys} belongs to nobody" in line and "sudo -u nobody" in line
        assert env.cli("status").returncode == 0
        assert env.cli("audit", "verify").returncode == 0
    finally:
        os.chown(keys, 0, 0)


@pytest.mark.timeout(120)
def test_emergency_with_a_stale_secondary_says_what_is_left(env: RotatorEnv) -> None:
    key_id = activate_one(env)
    env.bind.stop_secondary()
    proc = env.cli("rotate", "--emergency", DOMAIN, "--reason", "leak", "--wait", "3", check=False)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert key_id not in (env.workdir / "opendkim" / "KeyTable").read_text()
    out = proc.stdout
    assert "still to do: " in out and "verify-revocation not done yet" in out
    secondary = "{}:{}".format(*env.bind.server("secondary"))
    assert secondary in out
    assert "not finished after 3s: no daemon is running" in out
    assert "False" not in out


@pytest.mark.timeout(120)
def test_a_healthy_lifecycle_records_no_action_failed(env: RotatorEnv) -> None:
    env.cli("domain", "add", DOMAIN, "--policy", "demo-ed25519")
    env.start()
    first = env.wait_for("key active", lambda: env.key_in_state(DOMAIN, "active"))
    env.cli("rotate", DOMAIN, "--reason", "healthy")
    env.wait_for("first key destroyed", lambda: env.key_in_state(DOMAIN, "destroyed"), 60)
    assert env.stop() == 0
    assert events(env, "--type", "ActionFailed") == []
    verified = [e for e in events(env, "--key", first.key_id) if e["type"] == "KeyVerified"]
    assert len(verified) == 1


def children(pid: int) -> set[int]:
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def alive(pids: set[int]) -> set[int]:
    return {p for p in pids if Path(f"/proc/{p}").exists()}


@pytest.mark.timeout(240)
def test_a_killed_daemon_leaves_no_workers_and_keeps_its_progress(env: RotatorEnv) -> None:
    domains = [f"d{i}.{DOMAIN}" for i in range(60)]
    # what `domain add` does, in one process (60 commands took half a minute)
    app = build(load_config(env.config))
    try:
        for d in domains:  # RSA-2048: generated in the worker pool, recorded chunk by chunk
            app.onboarding.add_identity(d, "demo", DOMAIN, None, "bob", "integration test")
    finally:
        app.close()
    daemon = env.start()
    workers = env.wait_for("key generation workers", lambda: children(daemon.pid), 30)

    def recorded() -> list[str]:
        store = SqliteEventStore(env.workdir / "rotator.db")
        try:
            return [k.key_id for k in store.list_keys()]
        finally:
            store.close()

    early = env.wait_for("a first chunk of keys recorded", lambda: recorded() or None, 60)
    env.stop(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert alive(workers) == set(), "worker processes outlived the SIGKILLed daemon"
    assert 0 < len(early) < len(domains)
    env.start()
    env.wait_for(
        "every domain active",
        lambda: len([k for k in env.list_keys() if k.state.value == "active"]) == len(domains),
        180,
    )
    assert env.stop() == 0
    kept = {k.key_id for k in env.list_keys()}
    assert set(early) <= kept  # recorded before the kill: used, not thrown away
    generated = [e for e in events(env) if e["type"] == "KeyGenerated"]
    assert len(generated) == len(domains)  # nothing generated twice


@pytest.mark.timeout(60)
def test_domain_add_refuses_a_zone_the_primary_does_not_serve(env: RotatorEnv) -> None:
    proc = env.cli("domain", "add", "elsewhere.example", "--policy", "demo", check=False)
    primary = "{}:{}".format(*env.bind.server("primary"))
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        f"Error: domain elsewhere.example: the primary {primary} answers REFUSED for zone "
        "elsewhere.example: add the zone there, or give it to another [[dns.backends]] entry"
    ]
    assert not [e for e in events(env) if e["type"] == "IdentityAdded"]  # nothing recorded
    quiet = env.cli("domain", "add", DOMAIN, "--policy", "demo")
    assert "warning" not in quiet.stderr


@pytest.mark.timeout(60)
def test_domain_add_warns_when_the_primary_cannot_be_asked(env: RotatorEnv) -> None:
    primary = "{}:{}".format(*env.bind.server("primary"))
    env.bind.stop_primary()
    proc = env.cli("domain", "add", DOMAIN, "--policy", "demo")
    assert f"warning: the primary {primary} did not answer a SOA query for {DOMAIN}" in (
        proc.stderr
    )
    assert "its keys wait until the backend answers" in proc.stderr
    assert [e["domain"] for e in events(env) if e["type"] == "IdentityAdded"] == [DOMAIN]


def test_a_burst_of_signals_stops_the_daemon_cleanly(env: RotatorEnv) -> None:
    # `timeout` sends SIGTERM to the process and to its group, an operator's emergency sends
    # SIGUSR1: signals that interrupt each other must never leave the daemon hung
    activate_one(env)
    proc = env.start()
    env.wait_for("daemon_started", lambda: "daemon_started" in env.tail(200))
    for _ in range(200):
        os.kill(proc.pid, signal.SIGUSR1)
    for _ in range(200):
        os.kill(proc.pid, signal.SIGTERM)
        os.kill(proc.pid, signal.SIGUSR1)
    assert env.stop(signal.SIGTERM, timeout=15) == 0
    lines = env.tail(400)
    assert "daemon_stopped" in lines and "Traceback" not in lines
