"""The daemon takes a key through its whole lifecycle on each backend alone (no `[dns]`
primary): published, verified at both addresses, active, rotated, revoked to `p=`
everywhere, destroyed, its tombstone removed."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.integration.rotatorenv import RotatorEnv

from .servers import BackendServers, wait_served
from .test_contract import POLICIES, backend_config

pytestmark = pytest.mark.integration


@pytest.mark.timeout(180)
def test_key_lifecycle_on_the_backend(servers: BackendServers, tmp_path: Path) -> None:
    domain = servers.zone
    env = RotatorEnv(tmp_path, servers, POLICIES, config=backend_config(tmp_path, servers))
    try:
        env.cli("domain", "add", domain, "--policy", "demo", "--zone", domain)
        env.start()
        first = env.wait_for("first key active", lambda: env.key_in_state(domain, "active"))
        wait_served(servers, first.record_name, [first.record], timeout=5)
        env.cli("rotate", domain, "--reason", "backend test")
        env.wait_for("successor active", lambda: env.key_in_state(domain, "active", {first.key_id}))
        env.wait_for("first key destroyed", lambda: env.key_in_state(domain, "destroyed"), 60)
        wait_served(servers, first.record_name, ["v=DKIM1; p="], timeout=5)
        env.wait_for(
            "tombstone removed",
            lambda: any(k.tombstone_removed for k in env.list_keys(domain)),
            60,
        )
        wait_served(servers, first.record_name, [], timeout=15)
        assert env.stop(signal.SIGTERM) == 0
        log = env.cli("log").stdout
        assert "KeyVerified" in log and "KeyPublished" in log
        assert "intact" in env.cli("audit", "verify").stdout
    finally:
        env.close()
