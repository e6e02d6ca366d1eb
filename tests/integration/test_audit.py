"""The operator's audit log from the command line: following it live, and `audit verify`
naming the first event an attacker with database access edited, deleted or reordered."""

from __future__ import annotations

import json
import select
import sqlite3
import subprocess
import sys
import time

import pytest

from .conftest import DOMAIN
from .rotatorenv import SUBPROCESS_ENV, RotatorEnv

pytestmark = pytest.mark.integration


@pytest.mark.timeout(60)
def test_log_follow_prints_new_events_as_they_land(env: RotatorEnv) -> None:
    env.cli("domain", "add", DOMAIN, "--policy", "demo")
    follow = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rotator.cli",
            "--config",
            str(env.config),
            "log",
            "-f",
            "--json",
            "--type",
            "KeyActivated",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=SUBPROCESS_ENV,
        cwd=env.workdir,
    )
    try:
        env.start()  # the daemon activates the first key while `log -f` is running
        assert follow.stdout is not None
        deadline = time.monotonic() + 30
        line = b""
        while time.monotonic() < deadline and not line:
            ready, _, _ = select.select([follow.stdout], [], [], 0.5)
            if ready:
                line = follow.stdout.readline()
        event = json.loads(line)
        assert (event["type"], event["domain"]) == ("KeyActivated", DOMAIN)
    finally:
        follow.kill()
        follow.wait(timeout=5)
        env.stop()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        ("UPDATE events SET reason = 'nothing happened' WHERE position = 3", "event 3"),
        ("DELETE FROM events WHERE position = 2", "position 2 is missing"),
        (
            "UPDATE events SET payload = (SELECT payload FROM events WHERE position = 4) "
            "WHERE position = 3",
            "event 3",
        ),
    ],
)
def test_audit_verify_names_the_tampered_event(env: RotatorEnv, tamper: str, expected: str) -> None:
    env.cli("domain", "add", DOMAIN, "--policy", "demo", "--reason", "onboarding")
    env.wait_for(
        "four events", lambda: env.cli("run", "--once") and env.store().info()["events"] >= 4
    )
    assert "intact" in env.cli("audit", "verify").stdout
    db = sqlite3.connect(env.workdir / "rotator.db")
    db.execute("DROP TRIGGER events_no_update")
    db.execute("DROP TRIGGER events_no_delete")
    db.execute(tamper)
    db.commit()
    db.close()
    bad = env.cli("audit", "verify", check=False)
    assert bad.returncode != 0
    assert expected in bad.stderr, bad.stderr
