"""Onboarding requests recorded together (the API's group commit): one transaction for
all that pass, and each request the answer it would have had alone."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rotator.app import CustomerRow, OnboardingRequest
from rotator.bootstrap import build
from rotator.config.settings import load_config
from rotator.domain.errors import InputError, RotatorError
from rotator.domain.model import IdentityState
from tests.support.apiserver import serving
from tests.support.http import Client

from .clirun import event_count
from .conftest import UnitEnv
from .test_api import token


def request(domain: str, policy: str = "demo", actor: str = "panel") -> OnboardingRequest:
    row = CustomerRow("acme", domain, "cname", policy, zone="cname.esp-dkim.net")
    return OnboardingRequest(row, actor, f"onboard {domain}")


def test_a_batch_is_one_transaction_and_each_keeps_its_own_answer(
    env: UnitEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    appends: list[int] = []
    original = env.ctx.recorder.append

    def counted(events, *args, **kw):  # type: ignore[no-untyped-def]
        appends.append(len(events))
        return original(events, *args, **kw)

    monkeypatch.setattr(env.ctx.recorder, "append", counted)
    batch = [
        request("a.example"),
        request("b.example", policy="nosuch"),
        request("c.example", actor="other"),
        request("a.example"),  # the same domain as the first: "already managed" after it
    ]
    a, bad, c, again = env.app.batched_onboarding.add_each(batch)
    assert isinstance(a, IdentityState) and a.identity == "a.example"
    assert isinstance(c, IdentityState) and c.identity == "c.example"
    assert isinstance(bad, InputError) and str(bad).startswith("input: policy: ")
    assert isinstance(again, InputError)
    assert str(again) == "input: domain a.example is already managed; see `rotator status`"
    assert appends == [2]  # a and c in one transaction; the repeat found a recorded
    added = {i.identity: i for i in env.store.identities()}
    assert set(added) == {"a.example", "c.example"}


def test_what_fails_the_batch_as_a_whole_is_tried_one_by_one(
    env: UnitEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    onboarding = env.app.onboarding
    original = onboarding.add_events

    def refuse_many(events):  # type: ignore[no-untyped-def]
        if len(events) > 1:
            raise InputError("too many at once")
        return original(events)

    monkeypatch.setattr(onboarding, "add_events", refuse_many)
    outcomes = env.app.batched_onboarding.add_each([request("a.example"), request("b.example")])
    assert [o.identity for o in outcomes if not isinstance(o, RotatorError)] == [
        "a.example",
        "b.example",
    ]


def test_concurrent_creates_over_http_each_get_their_identity(cfg: Path) -> None:
    auth = token(cfg, "panel", "provision")
    app = build(load_config(cfg), command=False, via="api")
    try:
        with serving(app) as base:
            client = Client(base)

            def create(n: int) -> tuple[int, str]:
                body = {"customer": f"c{n % 3}", "domain": f"d{n % 20}.example", "mode": "cname",
                        "policy": "demo", "zone": "cname.esp-dkim.net"}  # fmt: skip
                response = client.post("/v1/customers", json=body, headers=auth)
                return response.status_code, response.json().get("identity", "")

            before = event_count(cfg)
            with ThreadPoolExecutor(8) as pool:
                results = list(pool.map(create, range(40)))
    finally:
        app.close()
    made = sorted(ident for status, ident in results if status == 201)
    assert made == sorted(f"d{n}.example" for n in range(20))  # each domain once
    assert sorted(status for status, _ in results).count(400) == 20  # the repeats
    assert event_count(cfg) == before + 20
