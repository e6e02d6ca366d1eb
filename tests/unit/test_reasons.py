"""Reason codes: every failure, parked step, deferral notice and customer-DNS finding is
recorded with a code; status, metrics and the store's counts select on it, so rewording a
message changes nothing they count; a log recorded before codes folds (and a database
from before them upgrades) to the codes its messages map to."""

from __future__ import annotations

import ast
import dataclasses
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import rotator
from rotator.adapters.store.anchor import Anchor
from rotator.adapters.store.sqlite import SqliteEventStore
from rotator.app import CustomerRow
from rotator.app.recording import Recorder, key_ids
from rotator.bootstrap import sealer_for
from rotator.config.settings import load_config
from rotator.domain import events as ev
from rotator.domain.reasons import Reason, legacy_code
from rotator.domain.states import Action, State
from rotator.metrics.ticks import TickMetrics

from .clirun import add, db_path, ok
from .conftest import MakeEnv, UnitEnv
from .test_metrics import collector, scrape, value
from .test_watch import watched_policy

ESP_NS = ("dkim1.esp.test", "dkim2.esp.test")
ACME = "acme.example"
ACME_ZONE = "myesp._domainkey.acme.example"
CUSTOMER = {"mode": "ns-delegation", "role": "customer"}


def found(env: UnitEnv, *types: type[ev.Event]) -> list[Any]:
    return [s.event for s in env.store.events() if isinstance(s.event, types)]


def acme(env: UnitEnv) -> None:
    env.app.onboarding.add_customers([CustomerRow("Acme", ACME, "ns-delegation", "demo")], "op")


# --- the legacy mapping ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("awaiting customer DNS: example.com does not delegate x", Reason.AWAITING_CUSTOMER_DNS),
        (
            "parked after 5 failures: awaiting customer DNS: CNAME a -> b is missing",
            Reason.AWAITING_CUSTOMER_DNS,
        ),
        (
            "awaiting customer DNS: the check failed [verification overdue]",
            Reason.AWAITING_CUSTOMER_DNS,
        ),
        ("drift: ns2 serves another record", Reason.DRIFT),
        ("parked after 3 failures: drift: ns2 serves another record", Reason.DRIFT),
        ("signer targets lagging: opendkim: reload failed", Reason.SIGNER_LAGGING),
        (
            "1/2 nameserver addresses disagree: 127.0.0.2 (ns2): NXDOMAIN",
            Reason.NAMESERVERS_DISAGREE,
        ),
        ("REFUSED from 127.0.0.1:53 for zone example.com", Reason.DNS_REFUSED),
        ("TSIG BADSIG from 127.0.0.1:53 for zone x: check dns.tsig_secret", Reason.DNS_TSIG),
        ("timeout after 5s sending UPDATE to 127.0.0.1:53 for zone x", Reason.DNS_TIMEOUT),
        ("internal error: KeyError: 'x'", Reason.INTERNAL),
        ("cannot generate a key: disk full", Reason.KEYSTORE),
        ("no free ping-pong slot: a, b still in use", Reason.NO_FREE_SLOT),
        ("rotation needed from customer: import their new key", Reason.CUSTOMER_KEY_NEEDED),
        ("only 1 pre-created CNAMEs left after esp3; ask", Reason.CNAMES_RUNNING_LOW),
        ("policy 'gone' not found", Reason.OTHER),
    ],
)
def test_old_messages_map_to_their_codes(text: str, code: Reason) -> None:
    assert legacy_code(text) is code


# --- every recording path sets a code -------------------------------------------------------

_CODED = {"ActionFailed", "StepParked", "RotationDeferred", "CustomerDnsBroken"}


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def _name(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def test_every_event_with_a_problem_is_built_with_its_code() -> None:
    """Recorder.failed and Recorder.defer take the code as a required argument (the type
    checker holds their callers to it); these are the places that build such events."""
    built: list[str] = []
    for path in Path(rotator.__file__).parent.rglob("*.py"):
        for call in _calls(ast.parse(path.read_text())):
            words = {k.arg for k in call.keywords}
            name = _name(call)
            if name in _CODED:
                built.append(name)
                assert "code" in words, f"{path}:{call.lineno}: {name} without code="
            if name in ("KeyGenerated", "KeyImported") and "notice" in words:
                assert "notice_code" in words, f"{path}:{call.lineno}: a notice without code"
            if name == "failed" and isinstance(call.func, ast.Attribute):
                assert "code" in words, f"{path}:{call.lineno}: failed() without code="
    assert sorted(set(built)) == sorted(_CODED)


def test_failures_parked_steps_and_deferrals_carry_codes(env: UnitEnv) -> None:
    env.policies["demo"] = dataclasses.replace(env.policies["demo"], park_after=2)
    env.app.onboarding.add_identity("example.com", "demo")
    env.dns.fail_publish = "the primary is down"
    env.app.lifecycle.tick()
    (failed,) = found(env, ev.ActionFailed)
    assert failed.code is Reason.DNS_UPDATE_FAILED
    key = env.key_of("example.com")
    assert key.last_error_code is Reason.DNS_UPDATE_FAILED
    env.clock.advance(3600)
    env.app.lifecycle.tick()  # the second failure parks the step
    (parked,) = found(env, ev.StepParked)
    assert parked.code is Reason.DNS_UPDATE_FAILED
    key = env.key_of("example.com")
    assert key.parked and key.last_error_code is Reason.DNS_UPDATE_FAILED
    (row,) = env.app.queries.status("example.com")
    assert row.code is Reason.DNS_UPDATE_FAILED

    # a policy file gone: the identity's rotation is deferred with its code
    env.app.onboarding.add_identity("example.org", "demo")
    del env.policies["demo"]
    env.app.lifecycle.tick()
    (deferred,) = found(env, ev.RotationDeferred)
    assert deferred.code is Reason.POLICY_UNAVAILABLE
    ident = env.store.identity("example.org")
    assert ident is not None and ident.notice_code is Reason.POLICY_UNAVAILABLE
    (notice,) = [r for r in env.app.queries.identity_notices() if r.domain == "example.org"]
    assert notice.code is Reason.POLICY_UNAVAILABLE


def test_customer_dns_problems_carry_their_code(make_env: MakeEnv) -> None:
    env = make_env(policies={"demo": watched_policy()}, esp_nameservers=ESP_NS)
    acme(env)
    env.app.lifecycle.tick()  # published, but the customer has not delegated yet
    (failed,) = found(env, ev.ActionFailed)
    assert failed.code is Reason.AWAITING_CUSTOMER_DNS
    assert env.key_of(ACME).last_error_code is Reason.AWAITING_CUSTOMER_DNS

    env.dns.delegations[ACME_ZONE] = set(ESP_NS)
    env.clock.advance(1)
    env.app.lifecycle.tick()
    assert env.key_of(ACME).state is State.ACTIVE
    assert env.key_of(ACME).last_error_code is None  # a success clears it

    # the watch finds the delegation gone after activation
    del env.dns.delegations[ACME_ZONE]
    for _ in range(2):  # two whole watch intervals
        env.clock.advance(100)
        env.app.lifecycle.tick()
    (broken,) = found(env, ev.CustomerDnsBroken)
    assert broken.code is Reason.AWAITING_CUSTOMER_DNS
    ident = env.store.identity(ACME)
    assert ident is not None and ident.dns_problem_code is Reason.AWAITING_CUSTOMER_DNS


def test_status_json_shows_the_code(cfg: Path) -> None:
    add(cfg, ACME)
    config = load_config(cfg)  # written as the commands write: sealed, anchored
    sealer = sealer_for(config, readonly=True)
    store = SqliteEventStore(db_path(cfg), sealer=sealer, anchor=Anchor(config.audit.anchor))
    try:
        ident = store.identity(ACME)
        assert ident is not None
        broken = ev.CustomerDnsBroken(
            at=ident.created_at,
            identity=ACME,
            domain=ACME,
            problem="the NS records are gone",
            code=Reason.AWAITING_CUSTOMER_DNS,
        )
        store.append([broken], {f"identity:{ACME}": ident.version})
    finally:
        store.close()
    (line,) = ok(cfg, "status", "--json").stdout.splitlines()
    row = json.loads(line)
    assert (row["state"], row["code"]) == ("customer DNS", "awaiting-customer-dns")


# --- counts select on the code, not the message ---------------------------------------------


def test_a_reworded_message_is_still_counted(
    make_env: MakeEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed = Recorder.failed

    def reworded(
        self: Recorder, keys: Any, action: Action, reason: str, *a: Any, **kw: Any
    ) -> None:
        reason = reason.replace("awaiting customer DNS", "waiting for the customer's NS records")
        failed(self, keys, action, reason, *a, **kw)

    monkeypatch.setattr(Recorder, "failed", reworded)
    env = make_env(esp_nameservers=ESP_NS)
    ticks = TickMetrics(CollectorRegistry())
    ticks.start_counting(env.store)
    acme(env)
    env.app.lifecycle.tick()
    ticks.scan(env.store)
    (failure,) = found(env, ev.ActionFailed)
    assert "awaiting customer DNS" not in failure.error  # reworded indeed
    s = scrape(collector(env))
    assert value(s, "rotator_identities_awaiting_customer_dns", **CUSTOMER) == 1
    assert ticks.failures.labels("verify", "customer-dns")._value.get() == 1


def test_a_message_that_reads_like_another_kind_is_counted_by_its_code(env: UnitEnv) -> None:
    env.app.onboarding.add_identity("example.com", "demo")
    env.app.lifecycle.tick()
    key = env.key_of("example.com")
    lookalike = ev.ActionFailed(
        at=env.clock.now(),
        key_id=key.key_id,
        identity=key.identity,
        domain=key.domain,
        selector=key.selector,
        action="activate",
        error="drift: awaiting customer DNS (a signer said so)",
        attempt=1,
        retry_at=env.clock.now(),
        code=Reason.SIGNER_FAILED,
    )
    env.store.append([lookalike], {f"key:{key.key_id}": key.version})
    s = scrape(collector(env))
    assert s[("rotator_drift_findings", frozenset())] == 0
    third = {"mode": "third-party", "role": "customer"}
    assert value(s, "rotator_identities_awaiting_customer_dns", **third) == 0
    ticks = TickMetrics(CollectorRegistry())
    ticks.count(lookalike)
    assert ticks.failures.labels("activate", "other")._value.get() == 1


# --- old logs and old databases ---------------------------------------------------------------


def old_log(env: UnitEnv) -> dict[str, Reason | None]:
    """Events as a rotator before codes recorded them (no code field), over a live key
    and an identity; the codes their fold gives."""
    env.app.onboarding.add_identity("example.com", "demo")
    env.app.onboarding.add_identity("example.org", "demo")
    env.app.lifecycle.tick()
    key = env.key_of("example.com")
    ids = key_ids(key, env.clock.now())
    failures = [
        ev.ActionFailed(
            **ids,
            action="activate",
            error="awaiting customer DNS: CNAME a -> b",
            attempt=1,
            retry_at=env.clock.now(),
        ),
        ev.StepParked(**ids, action="activate", error="drift: ns2 serves x", attempts=2),
    ]
    env.store.append(failures, {f"key:{key.key_id}": key.version})
    ident = env.store.identity("example.org")
    assert ident is not None
    notes = [
        ev.RotationDeferred(at=env.clock.now(), identity=ident.identity, domain=ident.domain,
                            retry_at=env.clock.now(), notice="no free ping-pong slot: a, b"),
        ev.CustomerDnsBroken(at=env.clock.now(), identity=ident.identity, domain=ident.domain,
                             problem="awaiting customer DNS: example.org does not delegate"),
    ]  # fmt: skip
    env.store.append(notes, {f"identity:{ident.identity}": ident.version})
    return {
        "last_error_code": Reason.DRIFT,
        "notice_code": Reason.NO_FREE_SLOT,
        "dns_problem_code": Reason.AWAITING_CUSTOMER_DNS,
    }


def codes(store: SqliteEventStore) -> dict[str, Reason | None]:
    key = store.list_keys("example.com")[0]
    ident = store.identity("example.org")
    assert ident is not None
    return {
        "last_error_code": key.last_error_code,
        "notice_code": ident.notice_code,
        "dns_problem_code": ident.dns_problem_code,
    }


def test_an_old_log_folds_and_rebuilds_to_the_codes_of_its_messages(env: UnitEnv) -> None:
    want = old_log(env)
    assert codes(env.store) == want
    conn = sqlite3.connect(env.store.path)
    payloads = [json.loads(p) for (p,) in conn.execute("SELECT payload FROM events")]
    conn.close()
    assert not any("code" in p or "notice_code" in p for p in payloads)  # written as they were
    assert env.store.rebuild(check_only=True) == []
    env.store.rebuild()
    assert codes(env.store) == want


def test_a_database_from_before_codes_is_upgraded_to_the_same_codes(env: UnitEnv) -> None:
    want = old_log(env)
    path = env.store.path
    env.store.close()
    conn = sqlite3.connect(path)  # back to the schema before the codes (m008)
    conn.executescript(
        """
        DROP INDEX keys_error_code;
        DROP INDEX identities_notice_code;
        ALTER TABLE keys DROP COLUMN last_error_code;
        ALTER TABLE identities DROP COLUMN notice_code;
        ALTER TABLE identities DROP COLUMN dns_problem_code;
        DELETE FROM _sqlite_migrations WHERE name = 'm009_reason_codes';
        """
    )
    conn.commit()
    conn.close()
    env.store = upgraded = SqliteEventStore(path)
    assert codes(upgraded) == want
    assert upgraded.rebuild(check_only=True) == []


def test_the_reference_explains_every_code() -> None:
    root = Path(rotator.__file__).parent.parent
    readme = (root / "docs" / "reference" / "events.md").read_text().split("Every code, printed")[0]
    assert [c.value for c in Reason if f"`{c.value}`" not in readme] == []
