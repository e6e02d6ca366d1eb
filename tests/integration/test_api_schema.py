"""Property-based tests of every operation in /openapi.json against the API on a real
server: generated requests (valid and not) get no 5xx, and every answer (its status, media
type and body) is one the document declares."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, cast

import pytest
import schemathesis
import structlog
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from rotator.api.app import create_app
from rotator.api.state import ApiState
from rotator.bootstrap import build
from rotator.config.settings import load_config
from tests.support.apiserver import serving
from tests.support.http import Client
from tests.unit.clirun import ok, write_config

pytestmark = pytest.mark.integration

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """The base URL and an admin token's header (admin holds every scope)."""
    cfg = write_config(tmp_path_factory.mktemp("api"))
    handlers = list(logging.getLogger().handlers)
    secret = ok(cfg, "token", "create", "fuzz", "--scope", "admin").stdout.strip()
    # the CLI pointed logging at the runner's stream, gone now
    structlog.reset_defaults()
    for h in list(logging.getLogger().handlers):
        if h not in handlers:
            logging.getLogger().removeHandler(h)
    auth = {"Authorization": f"Bearer {secret}"}
    app = build(load_config(cfg), command=False, via="api")
    try:
        with serving(app) as base:
            # one identity, so that the lists and the log have items to answer with
            body = {"customer": "acme", "domain": "acme.example", "mode": "cname",
                    "policy": "demo", "zone": "cname.esp-dkim.net"}  # fmt: skip
            added = Client(base).post("/v1/customers", json=body, headers=auth)
            assert added.status_code == 201, added.text
            yield base, auth
    finally:
        app.close()


# The document is needed when the tests are collected, before any server runs: it comes
# from the application itself (no state is read to build it); the test below checks that
# the live server serves this very document.
DOCUMENT = create_app(cast(ApiState, None)).openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT)


def test_the_server_serves_this_document(api: tuple[str, dict[str, str]]) -> None:
    base, _ = api
    assert Client(base).get("/openapi.json").json() == DOCUMENT


@schema.parametrize()
@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_conforms(case: Case[Any], api: tuple[str, dict[str, str]]) -> None:
    base, auth = api
    case.call_and_validate(base_url=base, headers=auth, checks=CHECKS, timeout=10)


@pytest.mark.parametrize(
    ("path", "method", "params", "body"),
    [
        # answers the generator rarely reaches: those of an identity that exists, a webhook
        ("/v1/identities/{domain}", "GET", {"domain": "acme.example"}, None),
        ("/v1/identities/{domain}/rotations", "POST", {"domain": "acme.example"}, {}),
        ("/v1/webhooks", "POST", {}, {"url": "http://127.0.0.1:1/hook"}),
    ],
)
def test_known_requests_conform(
    api: tuple[str, dict[str, str]],
    path: str,
    method: str,
    params: dict[str, str],
    body: Any,  # a JSON body, or None: none
) -> None:
    base, auth = api
    operation = schema[path][method]
    case = (
        operation.Case(path_parameters=params)
        if body is None
        else operation.Case(path_parameters=params, body=body, media_type="application/json")
    )
    response = case.call_and_validate(base_url=base, headers=auth, checks=CHECKS, timeout=10)
    assert response.status_code < 300, response.text
