"""The HTTP API in-process (no daemon, no DNS): auth and scopes, problem documents with
the CLI's line, idempotent writes, the OpenAPI document."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from rotator.bootstrap import build
from rotator.config.settings import load_config
from rotator.domain.errors import StoreError
from rotator.domain.states import State
from rotator.ports import Leader
from rotator.timeutil import iso
from tests.support.apiserver import serving
from tests.support.http import Client, Response

from .clirun import db_path, event_count, ok, refused
from .test_status_leader import Shared


@pytest.fixture
def client(cfg: Path) -> Iterator[Client]:
    app = build(load_config(cfg), command=False, via="api")
    try:
        with serving(app) as base:
            yield Client(base)
    finally:
        app.close()


def token(cfg: Path, name: str, *scopes: str) -> dict[str, str]:
    args = [a for s in scopes for a in ("--scope", s)]
    secret = ok(cfg, "token", "create", name, *args).stdout.strip()
    return {"Authorization": f"Bearer {secret}"}


def is_problem(response: Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert set(body) == {"type", "title", "status", "detail"} and body["status"] == status
    detail: str = body["detail"]
    assert "\n" not in detail
    return detail


def test_openapi_document(client: Client) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1.")
    assert "/v1/customers" in doc["paths"] and "/v1/log" in doc["paths"]


def test_without_token_or_scope_nothing_changes(cfg: Path, client: Client) -> None:
    body = {"customer": "acme", "domain": "acme.example", "mode": "cname", "policy": "demo",
            "zone": "cname.esp-dkim.net"}  # fmt: skip
    response = client.post("/v1/customers", json=body)
    assert "no token" in is_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    bad = {"Authorization": "Bearer rtr_nope"}
    assert "unknown or revoked" in is_problem(
        client.post("/v1/customers", json=body, headers=bad), 401
    )
    reader = token(cfg, "reader", "read")
    before = event_count(cfg)
    detail = is_problem(client.post("/v1/customers", json=body, headers=reader), 403)
    assert detail.startswith("token reader lacks the provision scope")
    assert event_count(cfg) == before


def test_create_customer_idempotently(cfg: Path, client: Client) -> None:
    auth = token(cfg, "panel", "provision", "read")
    body = {"customer": "acme", "domain": "acme.example", "mode": "cname", "policy": "demo",
            "zone": "cname.esp-dkim.net"}  # fmt: skip
    headers = {**auth, "Idempotency-Key": "k1"}
    first = client.post("/v1/customers", json=body, headers=headers)
    assert first.status_code == 201, first.text
    view = first.json()
    assert view["identity"] == "acme.example" and view["mode"] == "cname"
    records = view["customer_dns"]["records"]
    assert records and all(r["type"] == "CNAME" and r["zone_line"] for r in records)
    count = event_count(cfg)
    again = client.post("/v1/customers", json=body, headers=headers)
    assert again.status_code == 201 and again.json() == view
    assert event_count(cfg) == count  # nothing recorded twice
    other = client.post("/v1/customers", json={**body, "domain": "b.example"}, headers=headers)
    assert "different request" in is_problem(other, 422)
    conn = sqlite3.connect(db_path(cfg))
    actor, payload = conn.execute(
        "SELECT actor, payload FROM events WHERE type = 'IdentityAdded'"
    ).fetchone()
    conn.close()
    assert actor == "panel" and '"origin":"api"' in payload
    got = client.get("/v1/identities/ACME.example.", headers=auth).json()
    assert got["awaiting"]["step"] == "generate" and got["problems"] == []
    page = client.get("/v1/identities", params={"limit": 1}, headers=auth).json()
    assert [i["identity"] for i in page["items"]] == ["acme.example"] and page["next"] is None


def test_errors_carry_the_cli_line(cfg: Path, client: Client) -> None:
    auth = token(cfg, "ops", "admin")
    line = refused(cfg, "rotate", "nowhere.example")
    response = client.post("/v1/identities/nowhere.example/rotations", json={}, headers=auth)
    assert line == "Error: " + is_problem(response, 404)
    line = refused(cfg, "safety", "release")
    assert line == "Error: " + is_problem(
        client.post("/v1/safety/release", json={}, headers=auth), 400
    )
    assert (
        is_problem(client.post("/v1/customers", json={}, headers=auth), 422)
        == "body.customer: Field required"
    )
    assert is_problem(client.get("/v1/nothing", headers=auth), 404)


def test_log_pages_by_position(cfg: Path, client: Client) -> None:
    auth = token(cfg, "ops", "admin")
    for n in range(3):
        ok(cfg, "domain", "add", f"d{n}.example", "--policy", "demo")
    first = client.get("/v1/log", params={"limit": 2, "type": "IdentityAdded"}, headers=auth)
    body = first.json()
    assert [e["domain"] for e in body["items"]] == ["d0.example", "d1.example"]
    rest = client.get(
        "/v1/log", params={"after": body["next"], "type": "IdentityAdded"}, headers=auth
    )
    assert [e["domain"] for e in rest.json()["items"]] == ["d2.example"]
    assert rest.json()["next"] is None
    bad = client.get("/v1/log", params={"type": "Nope"}, headers=auth)
    assert "unknown event type" in is_problem(bad, 400)


def test_emergency_refusals_change_nothing(cfg: Path, client: Client) -> None:
    auth = token(cfg, "ops", "emergency")
    ok(cfg, "domain", "add", "d.example", "--policy", "demo")
    before = event_count(cfg)
    body = {"domain": "d.example", "reason": "leak", "dry_run": True}
    line = refused(cfg, "rotate", "--emergency", "d.example", "--reason", "leak", "--dry-run")
    response = client.post("/v1/emergencies", json=body, headers=auth)
    assert line == "Error: " + is_problem(response, 404)  # no key yet: the CLI's refusal
    assert event_count(cfg) == before
    two = {"domain": "d.example", "policy": "demo", "reason": "leak"}
    assert "exactly one scope" in is_problem(
        client.post("/v1/emergencies", json=two, headers=auth), 400
    )


def test_the_status_page_asks_for_a_token_then_shows_the_fleet(cfg: Path, client: Client) -> None:
    import http.cookiejar
    import urllib.parse
    import urllib.request

    ok(cfg, "domain", "add", "example.com", "--policy", "demo")
    login = client.get("/")  # no token: the login form
    assert login.status_code == 200 and 'name="token"' in login.text
    read = token(cfg, "ops", "read")
    page = client.get("/", headers=read, params={"q": "example"})
    assert page.status_code == 200 and "example.com" in page.text
    assert "<script" not in page.text  # server-rendered, no JavaScript
    # a token without the read scope is sent to the form
    assert 'name="token"' in client.get("/", headers=token(cfg, "panel", "provision")).text
    missing = client.get("/identity", headers=read, params={"name": "nowhere.example"})
    assert missing.status_code == 404
    # the form: the token goes into an HttpOnly cookie, then the page answers without a header
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    secret = read["Authorization"].removeprefix("Bearer ")
    form = urllib.parse.urlencode({"token": secret}).encode()
    with opener.open(f"{client.base}/login", data=form, timeout=30) as resp:
        assert resp.status == 200 and "Current problems" in resp.read().decode()
    (cookie,) = list(jar)
    assert cookie.has_nonstandard_attr("HttpOnly")
    with opener.open(f"{client.base}/identity?name=example.com", timeout=30) as resp:
        assert "example.com" in resp.read().decode()
    bad = urllib.parse.urlencode({"token": "nope"}).encode()
    with pytest.raises(urllib.error.HTTPError) as refused_login:
        urllib.request.urlopen(f"{client.base}/login", data=bad, timeout=30)
    assert refused_login.value.code == 401


def test_webhooks_are_managed_with_the_admin_scope(cfg: Path, client: Client) -> None:
    admin, read = token(cfg, "root", "admin"), token(cfg, "viewer", "read")
    body = {"url": "https://panel.example/hooks", "events": ["identity.active"]}
    before = event_count(cfg)
    is_problem(client.post("/v1/webhooks", json=body, headers=read), 403)
    assert event_count(cfg) == before
    wrong = client.post("/v1/webhooks", json={**body, "events": ["no.such"]}, headers=admin)
    assert "unknown event type 'no.such'" in is_problem(wrong, 400)
    made = client.post("/v1/webhooks", json=body, headers=admin)
    assert made.status_code == 201, made.text
    hook = made.json()
    assert hook["secret"].startswith("whsec_") and hook["events"] == ["identity.active"]
    listed = client.get("/v1/webhooks", headers=admin).json()["webhooks"]
    assert [(h["id"], h["url"], h["parked"]) for h in listed] == [(hook["id"], body["url"], None)]
    assert "secret" not in listed[0]
    assert hook["secret"] not in ok(cfg, "log", "--json").stdout  # never in the log
    resume = client.post(f"/v1/webhooks/{hook['id']}/resume", json={}, headers=admin)
    assert "is not parked" in is_problem(resume, 400)
    gone = client.request("DELETE", f"/v1/webhooks/{hook['id']}", json_body={}, headers=admin)
    assert gone.status_code == 200
    assert client.get("/v1/webhooks", headers=admin).json()["webhooks"] == []
    assert "WebhookRemoved" in ok(cfg, "log").stdout


def test_policy_and_mode_change_as_the_cli_does(cfg: Path, client: Client) -> None:
    auth, rotate = token(cfg, "panel", "provision"), token(cfg, "ops", "rotate")
    ok(cfg, "domain", "add", "a.example", "--policy", "demo")
    before = event_count(cfg)
    body = {"policy": "demo-dual", "rotate_now": True, "reason": "two keys"}
    denied = client.request(
        "PUT", "/v1/identities/a.example/policy", json_body=body, headers=rotate
    )
    assert is_problem(denied, 403).startswith("token ops lacks the provision scope")
    assert event_count(cfg) == before
    changed = client.request("PUT", "/v1/identities/A.example/policy", json_body=body, headers=auth)
    assert changed.status_code == 200, changed.text
    assert changed.json()["policy"] == "demo-dual" and changed.json()["rotating"] is True
    after = event_count(cfg)
    line = refused(cfg, "domain", "set-policy", "a.example", "nosuch")
    bad = {"policy": "nosuch"}
    response = client.request("PUT", "/v1/identities/a.example/policy", json_body=bad, headers=auth)
    assert line == "Error: " + is_problem(response, 404)
    line = refused(cfg, "domain", "set-mode", "nowhere.example", "cname")
    mode = {"mode": "cname"}
    response = client.request("PUT", "/v1/identities/nowhere.example/mode", json_body=mode,
                              headers=auth)  # fmt: skip
    assert line == "Error: " + is_problem(response, 404)
    denied = client.request("PUT", "/v1/identities/a.example/mode", json_body=mode, headers=rotate)
    assert is_problem(denied, 403) and event_count(cfg) == after


def test_a_customer_key_is_imported_and_never_echoed(cfg: Path, client: Client) -> None:
    auth, reader = token(cfg, "panel", "provision"), token(cfg, "viewer", "read")
    ok(cfg, "customer", "add", "Acme", "--domain", "acme.example", "--mode", "customer-key",
       "--policy", "demo")  # fmt: skip
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    body = {"selector": "cust1", "pem": pem.decode()}
    before = event_count(cfg)
    assert is_problem(client.post("/v1/identities/acme.example/keys", json=body, headers=reader),
                      403)  # fmt: skip
    assert event_count(cfg) == before
    bad_file = cfg.parent / "bad.pem"
    bad_file.write_text("not a key")
    line = refused(cfg, "customer", "import-key", "acme.example", "--selector", "cust1",
                   "--key", str(bad_file))  # fmt: skip
    bad = client.post("/v1/identities/acme.example/keys", json={**body, "pem": "not a key"},
                      headers=auth)  # fmt: skip
    assert line == "Error: " + is_problem(bad, 400)
    made = client.post("/v1/identities/acme.example/keys", json=body,
                       headers={**auth, "Idempotency-Key": "i1"})  # fmt: skip
    assert made.status_code == 201, made.text
    assert made.json()["selector"] == "cust1" and "cust1._domainkey" in made.json()["record"]
    secret = pem.decode().splitlines()[1]
    assert secret not in made.text and secret not in ok(cfg, "log", "--json").stdout
    again = client.post("/v1/identities/acme.example/keys", json=body,
                        headers={**auth, "Idempotency-Key": "i1"})  # fmt: skip
    assert again.json() == made.json() and event_count(cfg) == before + 1


def test_domains_and_customers_are_removed_as_the_cli_does(cfg: Path, client: Client) -> None:
    auth, rotate = token(cfg, "panel", "provision"), token(cfg, "ops", "rotate")
    ok(cfg, "domain", "add", "a.example", "--policy", "demo")
    ok(cfg, "customer", "add", "Acme", "--domain", "acme.example", "--mode", "cname",
       "--policy", "demo", "--zone", "cname.esp-dkim.net")  # fmt: skip
    before = event_count(cfg)
    denied = client.request("DELETE", "/v1/identities/a.example", json_body={}, headers=rotate)
    assert is_problem(denied, 403) and event_count(cfg) == before
    dry = client.request("DELETE", "/v1/customers/Acme", json_body={"dry_run": True}, headers=auth)
    assert dry.json()["identities"] == ["acme.example"] and event_count(cfg) == before
    for path, args in (("/v1/identities/nowhere.example", ("domain", "remove", "nowhere.example")),
                       ("/v1/customers/Nobody", ("customer", "remove", "Nobody"))):  # fmt: skip
        line = refused(cfg, *args)
        response = client.request("DELETE", path, json_body={}, headers=auth)
        assert line == "Error: " + is_problem(response, 404)
    gone = client.request("DELETE", "/v1/identities/a.example", json_body={"now": True},
                          headers=auth)  # fmt: skip
    assert gone.status_code == 200, gone.text
    assert gone.json()["identities"] == ["a.example"] and gone.json()["signer_error"] is None
    left = client.request("DELETE", "/v1/customers/Acme", json_body={"reason": "contract ended"},
                          headers=auth)  # fmt: skip
    assert left.status_code == 200 and left.json()["identities"] == ["acme.example"]
    conn = sqlite3.connect(db_path(cfg))
    removed = conn.execute(
        "SELECT identity, actor FROM events WHERE type = 'IdentityRemoved' ORDER BY position"
    ).fetchall()
    conn.close()
    assert removed == [("a.example", "panel"), ("acme.example", "panel")]


def test_resume_needs_rotate_and_says_what_the_cli_says(cfg: Path, client: Client) -> None:
    rotate, reader = token(cfg, "ops", "rotate"), token(cfg, "viewer", "read")
    ok(cfg, "domain", "add", "a.example", "--policy", "demo")
    before = event_count(cfg)
    assert is_problem(client.post("/v1/identities/a.example/resume", headers=reader), 403)
    for name, status in (("a.example", 400), ("nowhere.example", 404)):
        line = refused(cfg, "resume", name)
        response = client.post(f"/v1/identities/{name}/resume", headers=rotate)
        assert line == "Error: " + is_problem(response, status)
    assert event_count(cfg) == before


def test_identity_pages_hold_each_identity_once(cfg: Path, client: Client) -> None:
    auth = token(cfg, "viewer", "read")
    for name in ("a", "c", "e", "g", "i"):
        ok(cfg, "domain", "add", f"{name}.example", "--policy", "demo")
    seen: list[str] = []
    after = ""
    while True:
        page = client.get("/v1/identities", params={"after": after, "limit": 2}, headers=auth)
        body = page.json()
        seen += [i["identity"] for i in body["items"]]
        if len(seen) == 2:  # between pages: one lands ahead of the cursor, one behind it
            ok(cfg, "domain", "add", "f.example", "--policy", "demo")
            ok(cfg, "domain", "add", "b.example", "--policy", "demo")
        if body["next"] is None:
            break
        after = body["next"]
    assert seen == ["a.example", "c.example", "e.example", "f.example", "g.example", "i.example"]


def test_a_token_revoked_by_the_cli_is_refused_at_the_next_request(
    cfg: Path, client: Client
) -> None:
    reader = token(cfg, "viewer", "read")
    assert client.get("/v1/safety", headers=reader).status_code == 200
    ok(cfg, "token", "revoke", "viewer")  # another process, while the API serves
    assert "unknown or revoked" in is_problem(client.get("/v1/safety", headers=reader), 401)


def test_status_counts_the_fleet_for_a_read_token(cfg: Path, client: Client) -> None:
    assert "no token" in is_problem(client.get("/v1/status"), 401)
    reader = token(cfg, "reader", "read")
    before = client.get("/v1/status", headers=reader)
    assert before.status_code == 200, before.text
    body = before.json()
    assert set(body["keys"]) == {s.value for s in State} and sum(body["keys"].values()) == 0
    # one node on SQLite: no lease to read
    assert (body["shared"], body["leader"], body["leader_error"]) == (False, None, None)
    assert body["held"] is None and body["problems"] == 0
    assert [(p["algorithm"], p["bits"]) for p in body["pool"]] == sorted(
        (p["algorithm"], p["bits"]) for p in body["pool"]
    )
    panel = token(cfg, "panel", "provision")
    customer = {"customer": "acme", "domain": "acme.example", "mode": "cname",
                "policy": "demo", "zone": "cname.esp-dkim.net"}  # fmt: skip
    assert client.post("/v1/customers", json=customer, headers=panel).status_code == 201
    after = client.get("/v1/status", headers=reader).json()
    assert after["identities"] == body["identities"] + 1


def test_status_says_which_daemon_leads_a_shared_database(cfg: Path) -> None:
    since = datetime(2026, 12, 7, 12, 0, 3, tzinfo=UTC)
    leader = Leader("mx-rotator-1", 3, since, since + timedelta(minutes=1), "42@mx", live=True)
    reader = token(cfg, "reader", "read")
    for seen, want, error in [
        (leader, {"node": "mx-rotator-1", "epoch": 3, "since": iso(since),
                  "expires": iso(since + timedelta(minutes=1)), "live": True}, None),
        (None, None, None),
        (StoreError("the database is unreachable"), None, "the database is unreachable"),
    ]:  # fmt: skip
        app = build(load_config(cfg), command=False, via="api")
        app.leadership.close()
        app.leadership = Shared(seen)
        try:
            with serving(app) as base:
                body = Client(base).get("/v1/status", headers=reader).json()
        finally:
            app.close()
        assert (body["shared"], body["leader"], body["leader_error"]) == (True, want, error)
