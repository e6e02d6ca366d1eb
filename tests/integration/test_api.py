"""The daemon process with [api] on a loopback port, beside real BIND: a token from the
CLI, a third-party customer onboarded over HTTP goes active through the daemon; refusals
are problem documents with the CLI's line and change nothing. A move to another signing
domain (set-mode) and the resume of a parked step, each through to an active key."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rotator.demo.localdns import BindPair
from rotator.domain.model import KeyState
from tests.support.http import Client

from .conftest import DOMAIN, POLICIES
from .rotatorenv import RotatorEnv
from .test_metrics import free_port

pytestmark = pytest.mark.integration


def serve_api(env: RotatorEnv) -> Client:
    """[api] on a free loopback port; the daemon started and its API answering."""
    port = free_port()
    env.config.write_text(env.config.read_text() + f'\n[api]\nlisten = "127.0.0.1:{port}"\n')
    client = Client(f"http://127.0.0.1:{port}", timeout=20)
    env.start()

    def up() -> bool:
        try:
            return client.get("/openapi.json").status_code == 200
        except OSError:  # nothing listens yet
            return False

    env.wait_for("the API", up, 30)
    return client


def bearer(env: RotatorEnv, name: str, *scopes: str) -> dict[str, str]:
    args = [a for s in scopes for a in ("--scope", s)]
    return {"Authorization": f"Bearer {env.cli('token', 'create', name, *args).stdout.strip()}"}


def events(client: Client, auth: dict[str, str], kind: str) -> list[dict[str, Any]]:
    """The log's events of one type, as GET /v1/log shows them (with their origin)."""
    page = client.get("/v1/log", params={"type": kind, "limit": 1000}, headers=auth).json()
    assert page["next"] is None
    items: list[dict[str, Any]] = page["items"]
    return items


@pytest.mark.timeout(180)
def test_a_customer_made_over_http_goes_active(env: RotatorEnv) -> None:
    secret = env.cli("token", "create", "panel", "--scope", "provision", "--scope", "read")
    reader = env.cli("token", "create", "viewer", "--scope", "read").stdout.strip()
    auth = {"Authorization": f"Bearer {secret.stdout.strip()}"}
    client = serve_api(env)
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
    # a zone the primary says it does not serve: refused before anything is recorded
    elsewhere = {**body, "domain": "delta.example", "signing_domain": "delta.elsewhere.example",
                 "zone": "elsewhere.example"}  # fmt: skip
    unserved = client.post("/v1/customers", json=elsewhere, headers=auth)
    assert unserved.status_code == 400, unserved.text
    assert unserved.headers["content-type"] == "application/problem+json"
    assert "answers REFUSED for zone elsewhere.example" in unserved.json()["detail"]
    added = [ln for ln in env.cli("log", "--type", "IdentityAdded").stdout.splitlines()]
    assert len(added) == 1 and " by panel [api]" in added[0]
    assert env.stop() == 0
    assert secret.stdout.strip() not in env.daemon_log.read_text()


@pytest.mark.timeout(180)
def test_set_mode_moves_signing_to_another_domain(env: RotatorEnv) -> None:
    """third-party d=beta.DOMAIN to d=gamma.DOMAIN: a new identity takes over when its
    first key is active, and the old one is retired."""
    auth = bearer(env, "panel", "provision", "read")
    env.cli("customer", "add", "Beta", "--domain", "beta.example", "--mode", "third-party",
            "--policy", "demo", "--signing-domain", f"beta.{DOMAIN}", "--zone", DOMAIN)  # fmt: skip
    client = serve_api(env)
    old = env.wait_for("beta's key active", lambda: env.key_in_state(f"beta.{DOMAIN}", "active"))
    body = {"mode": "third-party", "signing_domain": f"gamma.{DOMAIN}", "zone": DOMAIN,
            "reason": "new signing domain"}  # fmt: skip
    path = f"/v1/identities/beta.{DOMAIN}/mode"
    moved = client.request("PUT", path, json_body=body, headers=auth)
    assert moved.status_code == 200, moved.text
    view = moved.json()
    assert (view["identity"], view["mode"], view["rotating"]) == (
        f"gamma.{DOMAIN}",
        "third-party",
        True,
    )
    assert f"takes over from beta.{DOMAIN}" in view["explanation"]
    # third-party: the ESP publishes every record, the customer adds none
    assert view["records_to_add"] == [] and view["warnings"] == []
    new = env.wait_for("gamma active", lambda: env.key_in_state(f"gamma.{DOMAIN}", "active"), 60)
    served = env.answers(f"{new.selector}._domainkey.gamma.{DOMAIN}")
    assert all(texts for _rcode, _aa, texts in served.values())  # on both nameservers

    def retired() -> dict[str, Any] | None:
        got = client.get(f"/v1/identities/beta.{DOMAIN}", headers=auth).json()
        return got if got["removed_at"] else None

    assert env.wait_for("beta retired", retired, 60)["active_selector"] in (None, old.selector)
    now = client.get(f"/v1/identities/gamma.{DOMAIN}", headers=auth).json()
    assert now["active_selector"] == new.selector and now["problems"] == []
    (added,) = [
        e for e in events(client, auth, "IdentityAdded") if e["identity"] == f"gamma.{DOMAIN}"
    ]
    assert (added["actor"], added["origin"], added["reason"]) == (
        "panel",
        "api",
        "new signing domain",
    )
    assert added["payload"]["takes_over"] == f"beta.{DOMAIN}"
    assert env.stop() == 0


@pytest.fixture
def parking_env(tmp_path: Path, bind_factory: Callable[..., BindPair]) -> Iterator[RotatorEnv]:
    """As `env`, plus policy "parking": demo's, parked after two failures in a row."""
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies)
    demo = (policies / "demo.toml").read_text()
    (policies / "parking.toml").write_text(demo.replace('max = "4s"', 'max = "4s"\npark_after = 2'))
    renv = RotatorEnv(tmp_path, bind_factory(tmp_path / "bind", zones=(DOMAIN,)), policies)
    try:
        yield renv
    finally:
        renv.close()


@pytest.mark.timeout(180)
def test_a_parked_step_resumed_over_http_goes_active(parking_env: RotatorEnv) -> None:
    env = parking_env
    ops, reader = bearer(env, "ops", "rotate"), bearer(env, "viewer", "read")
    env.bind.stop_secondary()  # the first key is published, but cannot be verified
    env.cli("domain", "add", DOMAIN, "--policy", "parking")
    client = serve_api(env)

    def parked_key() -> KeyState | None:
        return next((k for k in env.list_keys(DOMAIN) if k.parked), None)

    parked = env.wait_for("the verification parked", parked_key, 60)
    view = client.get(f"/v1/identities/{DOMAIN}", headers=reader).json()
    assert view["awaiting"]["step"] == "verify"
    (problem,) = view["problems"]
    assert (problem["kind"], problem["selector"]) == ("parked", parked.selector)
    assert problem["detail"].startswith("parked after 2 failures")

    env.bind.start_secondary()
    body = {"reason": "secondary back"}
    done = client.post(f"/v1/identities/{DOMAIN}/resume", json=body, headers=ops)
    assert done.status_code == 200, done.text
    step = {"domain": DOMAIN, "selector": parked.selector, "step": "verify"}
    assert done.json() == {"resumed": [step]}
    (resumed,) = events(client, reader, "StepResumed")
    who = (resumed["key_id"], resumed["actor"], resumed["origin"], resumed["reason"])
    assert who == (parked.key_id, "ops", "api", "secondary back")
    env.wait_for("the key active", lambda: env.key_in_state(DOMAIN, "active"), 60)
    view = client.get(f"/v1/identities/{DOMAIN}", headers=reader).json()
    assert view["active_selector"] == parked.selector and view["problems"] == []
    assert env.stop() == 0
