"""Idempotency-Key over HTTP: a write's reply outlives the API server (a new App and server
over the same files), another request under the same key is 422, a retry while the first
is still being processed is 409, and a refused write keeps no reply."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rotator.adapters.idempotency.sqlite import SqliteIdempotencyKeys, replies_path
from rotator.api.idempotency import Attempt
from rotator.api.routes.customers import CustomerRequest
from rotator.bootstrap import build
from rotator.config.settings import load_config
from tests.support.apiserver import serving
from tests.support.http import Client, Response

from .clirun import db_path, event_count
from .test_api import is_problem, token

BODY = {"customer": "acme", "domain": "acme.example", "mode": "cname", "policy": "demo",
        "zone": "cname.esp-dkim.net"}  # fmt: skip


def post_once(cfg: Path, path: str, body: Any, headers: dict[str, str]) -> Response:
    """POST through an API server of its own, stopped and closed after the answer."""
    app = build(load_config(cfg), command=False, via="api")
    try:
        with serving(app) as base:
            return Client(base).post(path, json=body, headers=headers)
    finally:
        app.close()


def test_a_reply_survives_a_restart_of_the_api(cfg: Path) -> None:
    auth = {**token(cfg, "panel", "provision", "rotate"), "Idempotency-Key": "onboard-acme"}
    ops = {**token(cfg, "ops", "rotate"), "Idempotency-Key": "onboard-acme"}
    first = post_once(cfg, "/v1/customers", BODY, auth)
    assert first.status_code == 201, first.text
    count = event_count(cfg)
    again = post_once(cfg, "/v1/customers", BODY, auth)  # a new App and server: a restart
    assert (again.status_code, again.json()) == (201, first.json())
    assert event_count(cfg) == count  # nothing recorded twice
    other = post_once(cfg, "/v1/customers", {**BODY, "domain": "b.example"}, auth)
    assert "different request" in is_problem(other, 422)
    # the method and path are part of the request: the same key elsewhere is refused too
    path = "/v1/identities/acme.example/rotations"
    assert "different request" in is_problem(post_once(cfg, path, {}, auth), 422)
    assert event_count(cfg) == count
    # keys are each token's own
    assert post_once(cfg, path, {}, ops).status_code == 202
    assert event_count(cfg) == count + 1


def test_a_retry_while_the_first_is_processed_is_409(cfg: Path) -> None:
    auth = {**token(cfg, "panel", "provision"), "Idempotency-Key": "k1"}
    app = build(load_config(cfg), command=False, via="api")
    try:
        with serving(app) as base:
            # the first request, as the server sees it while it runs: its key claimed
            elsewhere = SqliteIdempotencyKeys(replies_path(db_path(cfg)))
            try:
                digest = Attempt("k1", "POST", "/v1/customers").digest(
                    CustomerRequest.model_validate(BODY)
                )
                assert elsewhere.claim("panel", "k1", digest, app.ctx.clock.now()) is None
            finally:
                elsewhere.close()
            before = event_count(cfg)
            response = Client(base).post("/v1/customers", json=BODY, headers=auth)
            assert "still being processed" in is_problem(response, 409)
            assert event_count(cfg) == before
    finally:
        app.close()


def test_a_refused_write_keeps_no_reply(cfg: Path) -> None:
    auth = {**token(cfg, "panel", "provision"), "Idempotency-Key": "k1"}
    wrong = post_once(cfg, "/v1/customers", {**BODY, "policy": "nosuch"}, auth)
    assert "policy 'nosuch' not found" in is_problem(wrong, 400)
    # the key is free again: the corrected request under it is not "a different request"
    made = post_once(cfg, "/v1/customers", BODY, auth)
    assert made.status_code == 201, made.text
