"""The OpenAPI document describes every success answer: each /v1 operation declares a 2xx
JSON schema whose objects name their properties (what schemathesis then holds the live
server to, in tests/integration/test_api_schema.py)."""

from __future__ import annotations

from typing import Any, cast

from rotator.api.app import create_app
from rotator.api.state import ApiState

DOCUMENT = create_app(cast(ApiState, None)).openapi()
METHODS = {"get", "put", "post", "delete", "patch"}


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    name = ref.removeprefix("#/components/schemas/")
    found: dict[str, Any] = DOCUMENT["components"]["schemas"][name]
    return found


def objects(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The object schemas an answer may be: a model, or each model of a union."""
    schema = resolve(schema)
    alternatives = schema.get("anyOf") or schema.get("oneOf")
    if alternatives:
        return [o for alt in alternatives for o in objects(alt)]
    return [schema]


def test_every_v1_operation_declares_what_it_answers() -> None:
    operations = [
        (method.upper(), path, op)
        for path, ops in DOCUMENT["paths"].items()
        if path.startswith("/v1/")
        for method, op in ops.items()
        if method in METHODS
    ]
    assert len(operations) >= 20
    for method, path, op in operations:
        successes = {s: r for s, r in op["responses"].items() if s.startswith("2")}
        assert successes, f"{method} {path}: no 2xx answer"
        for status, response in successes.items():
            schema = response.get("content", {}).get("application/json", {}).get("schema")
            assert schema, f"{method} {path} {status}: no JSON schema"
            for obj in objects(schema):
                where = f"{method} {path} {status} ({obj.get('title')})"
                assert obj.get("type") == "object" and obj.get("properties"), where
                # every key is declared: an undeclared one is a mistake, not an extension
                assert obj.get("additionalProperties") is False, where


def test_a_dry_run_and_a_declared_emergency_answer_differently() -> None:
    responses = DOCUMENT["paths"]["/v1/emergencies"]["post"]["responses"]
    plan = resolve(responses["200"]["content"]["application/json"]["schema"])
    declared = resolve(responses["202"]["content"]["application/json"]["schema"])
    assert set(declared["properties"]) - set(plan["properties"]) == {"signers", "signer_error"}
