"""Nothing is lost: the daemon dies (exit without cleanup, or SIGKILL) right after a side
effect and before its event, is restarted, and the key still converges with no event lost
or duplicated, no orphaned private key and an intact hash chain."""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter

import pytest

from rotator.faults import CRASH_EXIT
from tests.support.lifecycle import LIFECYCLE_EVENTS

from .conftest import DOMAIN
from .rotatorenv import RotatorEnv

pytestmark = pytest.mark.integration

SUCCESS_TYPES = set(LIFECYCLE_EVENTS)


def assert_consistent(env: RotatorEnv) -> list[dict[str, object]]:
    log = [json.loads(line) for line in env.cli("log", "--json").stdout.splitlines()]
    per_key = Counter((e["key_id"], e["type"]) for e in log if e["type"] in SUCCESS_TYPES)
    dupes = {k: n for k, n in per_key.items() if n > 1}
    assert not dupes, f"duplicated events: {dupes}"
    assert "intact" in env.cli("audit", "verify").stdout
    assert "matches" in env.cli("db", "rebuild", "--check").stdout
    live = {k.key_id for k in env.list_keys() if k.state.value not in ("destroyed",)}
    on_disk = {p.stem for p in (env.workdir / "keys").glob("*.pem")}
    assert on_disk == live, f"key files {on_disk} vs live keys {live}"
    return log


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    "crash_at",
    [
        "after-key-written",
        "after-dns-publish",
        "after-signer-written",
        "after-dns-revoke",
        "after-key-wiped",
    ],
)
def test_crash_between_side_effect_and_event(env: RotatorEnv, crash_at: str) -> None:
    env.cli("domain", "add", DOMAIN, "--policy", "demo")
    if crash_at in ("after-dns-revoke", "after-key-wiped"):
        # get a first key active and a rotation under way before arming the crash
        env.start()
        first = env.wait_for("first key active", lambda: env.key_in_state(DOMAIN, "active"))
        env.cli("rotate", DOMAIN, "--reason", "crash test")
        env.wait_for("first key draining", lambda: env.key_in_state(DOMAIN, "draining"))
        assert env.stop() == 0
    else:
        first = None
    proc = env.start(env={"ROTATOR_CRASH_AT": crash_at})
    code = proc.wait(timeout=60)
    env.daemon = None
    assert code == CRASH_EXIT, f"expected a crash at {crash_at}, got {code}:\n{env.tail()}"

    env.start()  # no crash this time: it must redo the unrecorded step and converge
    if first is None:
        env.wait_for("a key active after restart", lambda: env.key_in_state(DOMAIN, "active"))
    else:
        env.wait_for(
            "old key destroyed after restart", lambda: env.key_in_state(DOMAIN, "destroyed"), 60
        )
    assert env.stop() == 0
    log = assert_consistent(env)
    if crash_at == "after-key-written":
        # the key file written before the crash had no event: it was wiped, not used
        assert len({e["key_id"] for e in log if e["type"] == "KeyGenerated"}) == 1


@pytest.mark.timeout(300)
def test_random_sigkills_converge(env: RotatorEnv) -> None:
    rng = random.Random(20261124)
    env.cli("domain", "add", DOMAIN, "--policy", "demo")
    env.start()
    env.wait_for("first key active", lambda: env.key_in_state(DOMAIN, "active"))
    env.cli("rotate", DOMAIN, "--reason", "sigkill test")
    for _ in range(6):
        time.sleep(rng.uniform(0.3, 2.0))
        env.stop(signal.SIGKILL)
        env.start()
    env.wait_for("first key destroyed", lambda: env.key_in_state(DOMAIN, "destroyed"), 90)
    assert env.key_in_state(DOMAIN, "active") is not None
    assert env.stop() == 0
    assert_consistent(env)
