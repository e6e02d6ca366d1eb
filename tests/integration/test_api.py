"""The daemon process with [api] on a loopback port, beside real BIND: a token from the
CLI, a third-party customer onboarded over HTTP goes active through the daemon; refusals
are problem documents with the CLI's line and change nothing."""

from __future__ import annotations

import pytest

from tests.support.http import Client

from .conftest import DOMAIN
from .rotatorenv import RotatorEnv
from .test_metrics import free_port

pytestmark = pytest.mark.integration


@pytest.mark.timeout(180)
def test_a_customer_made_over_http_goes_active(env: RotatorEnv) -> None:
    port = free_port()
    env.config.write_text(env.config.read_text() + f'\n[api]\nlisten = "127.0.0.1:{port}"\n')
    secret = env.cli("token", "create", "panel", "--scope", "provision", "--scope", "read")
    reader = env.cli("token", "create", "viewer", "--scope", "read").stdout.strip()
    auth = {"Authorization": f"Bearer {secret.stdout.strip()}"}
    client = Client(f"http://127.0.0.1:{port}", timeout=20)
    env.start()

    def up() -> bool:
        try:
            return client.get("/openapi.json").status_code == 200
        except OSError:  # nothing listens yet
            return False

    env.wait_for("the API", up, 30)
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1.")

    body = {"customer": "Beta", "domain": "beta.example", "mode": "third-party",
            "policy": "demo", "signing_domain": f"beta.{DOMAIN}", "zone": DOMAIN}  # fmt: skip
    before = len(env.cli("log", "--json").stdout.splitlines())
    denied = client.post("/v1/customers", json=body, headers={"Authorization": f"Bearer {reader}"})
    assert denied.status_code == 403
    assert denied.headers["content-type"] == "application/problem+json"
    assert len(env.cli("log", "--json").stdout.splitlines()) == before
    assert client.post("/v1/customers", json=body).status_code == 401

    made = client.post("/v1/customers", json=body, headers={**auth, "Idempotency-Key": "b1"})
    assert made.status_code == 201, made.text
    again = client.post("/v1/customers", json=body, headers={**auth, "Idempotency-Key": "b1"})
    assert again.json() == made.json()
    env.wait_for("beta's key active", lambda: env.key_in_state(f"beta.{DOMAIN}", "active"), 60)
    view = client.get(f"/v1/identities/beta.{DOMAIN}", headers=auth).json()
    assert view["active_selector"] and view["problems"] == []

    line = env.cli("customer", "add", "Beta", "--domain", "beta.example", "--mode",
                   "third-party", "--policy", "demo", "--signing-domain", f"beta.{DOMAIN}",
                   "--zone", DOMAIN, check=False).stderr.strip()  # fmt: skip
    twice = client.post("/v1/customers", json=body, headers=auth)
    assert line == "Error: " + twice.json()["detail"]
    added = [ln for ln in env.cli("log", "--type", "IdentityAdded").stdout.splitlines()]
    assert len(added) == 1 and " by panel [api]" in added[0]
    assert env.stop() == 0
    assert secret.stdout.strip() not in env.daemon_log.read_text()
