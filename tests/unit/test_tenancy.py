"""ESP tenancy with in-memory DNS, a real SQLite store and real key files: customer
onboarding rules (modes, batch atomicity, error texts), the NS-delegation gate before a
customer key may go live, and the ESP's feedback-loop signature in the signer. The
real-DNS counterpart is tests/integration/test_tenancy.py."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from rotator.adapters.signers.opendkim import render_signing_table
from rotator.adapters.signers.target import legacy_key_table as render_key_table
from rotator.app import CustomerRow
from rotator.domain import events as ev
from rotator.domain.errors import InputError
from rotator.domain.states import Mode, Role, State
from rotator.ports import SigningEntry
from tests.support.cli import customer_add

from .clirun import event_count, ok, refused, run, write_config
from .conftest import MakeEnv, UnitEnv

ACME = "acme.example"
ACME_ZONE = "myesp._domainkey.acme.example"
ESP = "fbl.esp.test"
ESP_NS = ("dkim2.esp.test.", "DKIM1.esp.test")  # normalised: lower case, no trailing dot
WANT_NS = {"dkim1.esp.test", "dkim2.esp.test"}


@pytest.fixture
def env(make_env: MakeEnv) -> UnitEnv:
    return make_env(esp_nameservers=ESP_NS)


def row(
    domain: str = ACME,
    mode: str = "ns-delegation",
    customer: str = "Acme",
    **kw: str,
) -> CustomerRow:
    return CustomerRow(customer=customer, domain=domain, mode=mode, policy="demo", **kw)


def third_party(customer: str, domain: str, signing: str, **kw: str) -> CustomerRow:
    return row(domain, "third-party", customer, signing_domain=signing, **kw)


def added_events(env: UnitEnv) -> list[ev.IdentityAdded]:
    return [s.event for s in env.store.events() if isinstance(s.event, ev.IdentityAdded)]


# --- onboarding: what each mode records --------------------------------------------------


def test_ns_delegation_customer_with_esp_signature_is_recorded(env: UnitEnv) -> None:
    esp = env.app.onboarding.add_esp(ESP, "demo")
    assert (esp.role, esp.signing_pattern, esp.customer) == (Role.ESP, "", "")
    (ident,) = env.app.onboarding.add_customers(
        [row("Acme.Example.", customer=" Acme ", esp_signature="FBL.esp.test.")],
        actor="alice",
        reason="onboarding",
    )
    want = {
        "identity": ACME,
        "domain": ACME,
        "zone": ACME_ZONE,
        "signing_pattern": "*@acme.example",
        "customer": "Acme",
        "mode": "ns-delegation",
        "role": "customer",
        "esp_identity": ESP,
    }
    assert {k: getattr(ident, k) for k in want} == want
    assert env.store.identity(ACME) == ident
    event = added_events(env)[-1]
    assert (event.actor, event.reason) == ("alice", "onboarding")
    payload = event.payload()
    assert {k: payload[k] for k in want if k in payload} == {
        k: v for k, v in want.items() if k in payload
    }
    assert {"customer", "mode", "role", "esp_identity", "zone"} <= set(payload)
    assert (event.identity, event.domain) == (ACME, ACME)
    assert env.store.rebuild(check_only=True) == []


def test_third_party_customer_signs_with_the_esp_controlled_domain(env: UnitEnv) -> None:
    (ident,) = env.app.onboarding.add_customers(
        [third_party("Beta", "beta.example", "Beta.ESP-dkim.test", zone="esp-dkim.test")]
    )
    assert ident.identity == ident.domain == "beta.esp-dkim.test"
    assert ident.zone == "esp-dkim.test"
    assert ident.signing_pattern == "*@beta.example"
    assert (ident.customer, ident.mode, ident.role, ident.esp_identity) == (
        "Beta",
        Mode.THIRD_PARTY,
        Role.CUSTOMER,
        "",
    )
    payload = added_events(env)[-1].payload()
    assert payload["signing_pattern"] == "*@beta.example"
    assert (payload["customer"], payload["mode"]) == ("Beta", "third-party")
    assert env.app.customer_dns.check(ident) is None  # nothing required from the customer


@pytest.mark.parametrize(
    ("bad", "field", "text"),
    [
        (row("beta.example", "third-party"), "signing_domain", "need the ESP-controlled"),
        (
            third_party("Beta", "beta.example", "dkim.Beta.example"),
            "signing_domain",
            "inside the customer's own domain",
        ),
        (
            third_party("Beta", "beta.example", "beta.example"),
            "signing_domain",
            "inside the customer's own domain",
        ),
        (row(signing_domain="acme.esp-dkim.test"), "signing_domain", "only third-party"),
        (row(mode="dkim"), "mode", "'dkim' is not one of"),
        (row(mode="NS-Delegation"), "mode", "is not one of"),
        (row(customer=""), "customer", "1-100 characters"),
        (row(customer="   "), "customer", "1-100 characters"),
        (row(customer="Acme, Inc"), "customer", "without commas"),
        (row(customer="x" * 101), "customer", "1-100 characters"),
        (row("acme..example"), "domain", "empty label"),
        (row(esp_signature="nope.esp.test"), "esp_signature", "not an ESP signing domain"),
        (CustomerRow("Acme", ACME, "ns-delegation", "nope"), "policy", "'nope' not found"),
    ],
)
def test_bad_row_is_refused_naming_the_field(
    env: UnitEnv, bad: CustomerRow, field: str, text: str
) -> None:
    before = env.events()
    with pytest.raises(InputError) as err:
        env.app.onboarding.add_customers([bad])
    msg = str(err.value)
    assert msg.startswith(f"input: {field}: "), msg
    assert text in msg
    assert env.events() == before
    assert env.store.identities() == []


def test_esp_signature_must_name_an_esp_identity(env: UnitEnv) -> None:
    env.app.onboarding.add_identity("plain.example", "demo")
    env.app.onboarding.add_customers([third_party("Beta", "beta.example", "beta.esp-dkim.test")])
    before = env.events()
    for not_esp in ("plain.example", "beta.esp-dkim.test"):
        with pytest.raises(InputError, match=rf"^input: esp_signature: {not_esp} is not an ESP"):
            env.app.onboarding.add_customers([row(esp_signature=not_esp)])
    assert env.events() == before
    env.app.onboarding.add_esp(ESP, "demo")
    (ident,) = env.app.onboarding.add_customers([row(esp_signature=ESP)])
    assert ident.esp_identity == ESP


def test_batch_with_a_bad_last_row_adds_nothing(env: UnitEnv) -> None:
    env.app.onboarding.add_esp(ESP, "demo")
    before = env.events()
    rows = [
        row(where="customers.csv line 2", esp_signature=ESP),
        third_party("Gamma", "gamma.example", "gamma.esp-dkim.test", where="customers.csv line 3"),
        third_party("Delta", "delta.example", "", where="customers.csv line 4"),
    ]
    with pytest.raises(InputError) as err:
        env.app.onboarding.add_customers(rows)
    assert str(err.value).startswith("customers.csv line 4: signing_domain: ")
    assert env.events() == before
    assert [i.identity for i in env.store.identities()] == [ESP]
    # the same batch, fixed, lands in one go
    rows[2] = third_party("Delta", "delta.example", "delta.esp-dkim.test")
    added = env.app.onboarding.add_customers(rows)
    assert [i.identity for i in added] == [ACME, "gamma.esp-dkim.test", "delta.esp-dkim.test"]
    assert env.events() == before + 3


def test_duplicates_are_refused(env: UnitEnv) -> None:
    before = env.events()
    with pytest.raises(InputError, match=r"^line 3: domain acme\.example appears twice"):
        env.app.onboarding.add_customers(
            [row(where="line 2"), row("ACME.example.", customer="Other", where="line 3")]
        )
    assert env.events() == before
    env.app.onboarding.add_customers([row()])
    with pytest.raises(InputError, match=r"^line 9: domain acme\.example is already managed"):
        env.app.onboarding.add_customers([row(where="line 9")])
    assert env.events() == before + 1


def test_progress_callback_sees_every_row(env: UnitEnv) -> None:
    seen: list[str] = []

    def progress(rows: Any) -> Iterator[CustomerRow]:
        for r in rows:
            seen.append(r.domain)
            yield r

    env.app.onboarding.add_customers([row(), row("b.example", customer="B")], progress=progress)
    assert seen == [ACME, "b.example"]


# --- onboarding text ----------------------------------------------------------------------


def test_onboarding_ns_delegation_prints_the_ns_records(env: UnitEnv) -> None:
    (ident,) = env.app.onboarding.add_customers([row()])
    text, records = env.app.onboarding.instructions(ident)
    assert records == [
        f"{ACME_ZONE}. 86400 IN NS dkim1.esp.test.",
        f"{ACME_ZONE}. 86400 IN NS dkim2.esp.test.",
    ]
    assert f"Delegate {ACME_ZONE}" in text and ACME in text


def test_onboarding_without_configured_names_uses_the_served_ns(
    make_env: MakeEnv,
) -> None:
    env = make_env(esp_nameservers=())
    (ident,) = env.app.onboarding.add_customers([row()])
    _, records = env.app.onboarding.instructions(ident)
    assert records == [
        f"{ACME_ZONE}. 86400 IN NS ns1.esp.test.",
        f"{ACME_ZONE}. 86400 IN NS ns2.esp.test.",
    ]
    env.dns.served_ns = set()
    _, records = env.app.onboarding.instructions(ident)
    assert len(records) == 1
    assert records[0].startswith(";") and "dns.esp_nameservers" in records[0]
    assert ACME_ZONE in records[0]


def test_onboarding_third_party_needs_nothing(env: UnitEnv) -> None:
    (ident,) = env.app.onboarding.add_customers(
        [third_party("Beta", "beta.example", "beta.esp-dkim.test", zone="esp-dkim.test")]
    )
    text, records = env.app.onboarding.instructions(ident)
    assert records == []
    assert text.startswith("Nothing to add")
    assert "beta.example" in text and "d=beta.esp-dkim.test" in text


# --- the NS-delegation gate ----------------------------------------------------------------


def test_key_waits_for_the_customers_delegation(env: UnitEnv) -> None:
    (ident,) = env.app.onboarding.add_customers([row()])
    env.app.lifecycle.tick()
    key = env.key_of(ACME)
    assert key.state is State.PUBLISHED
    assert key.zone == ACME_ZONE and key.record_name in env.dns.records
    assert key.attempts == 1
    assert key.last_error.startswith("awaiting customer DNS")
    assert "does not delegate" in key.last_error and "dkim1.esp.test" in key.last_error
    assert (key.next_action_at - env.clock.now()).total_seconds() == 1
    assert env.signer.entries == []
    problem = env.app.customer_dns.check(ident)
    assert problem is not None and problem.startswith("awaiting customer DNS")

    env.clock.advance(1)
    env.app.lifecycle.tick()
    key = env.key(key.key_id)
    assert (key.state, key.attempts) == (State.PUBLISHED, 2)
    assert (key.next_action_at - env.clock.now()).total_seconds() == 2  # backoff doubles

    # delegated, but to the wrong servers: still stuck, and the message says both sets
    env.dns.delegations[ACME_ZONE] = {"ns1.other-host.test.", "ns2.other-host.test"}
    env.clock.advance(2)
    env.app.lifecycle.tick()
    key = env.key(key.key_id)
    assert (key.state, key.attempts) == (State.PUBLISHED, 3)
    assert key.last_error.startswith("awaiting customer DNS")
    assert "ns1.other-host.test, ns2.other-host.test" in key.last_error
    assert "dkim1.esp.test, dkim2.esp.test" in key.last_error
    assert env.signer.entries == []

    env.dns.delegations[ACME_ZONE] = {"DKIM1.esp.test.", "dkim2.esp.test"}
    assert env.app.customer_dns.check(ident) is None
    env.clock.advance(4)
    env.app.lifecycle.tick()
    key = env.key(key.key_id)
    assert key.state is State.ACTIVE
    assert (key.attempts, key.last_error) == (0, None)
    assert env.patterns() == {key.key_id: {"*@acme.example"}}
    fails = [s.event for s in env.store.events() if isinstance(s.event, ev.ActionFailed)]
    assert [(f.action, f.attempt) for f in fails] == [("verify", 1), ("verify", 2), ("verify", 3)]


def test_delegation_is_judged_against_served_ns_when_none_configured(
    make_env: MakeEnv,
) -> None:
    env = make_env(esp_nameservers=())
    env.app.onboarding.add_customers([row()])
    env.dns.delegations[ACME_ZONE] = {"dkim1.esp.test", "dkim2.esp.test"}
    env.app.lifecycle.tick()
    key = env.key_of(ACME)
    assert key.state is State.PUBLISHED
    assert "expected ns1.esp.test, ns2.esp.test" in key.last_error
    env.dns.delegations[ACME_ZONE] = {"ns1.esp.test", "ns2.esp.test"}
    env.clock.advance(1)
    env.app.lifecycle.tick()
    assert env.key(key.key_id).state is State.ACTIVE


def test_unreadable_delegation_keeps_the_key_waiting(env: UnitEnv) -> None:
    env.app.onboarding.add_customers([row()])
    env.dns.delegations[ACME_ZONE] = set(WANT_NS)
    env.dns.delegation_error = "timeout asking the acme.example servers"
    env.app.lifecycle.tick()
    key = env.key_of(ACME)
    assert key.state is State.PUBLISHED
    assert key.last_error.startswith("awaiting customer DNS")
    assert "timeout asking the acme.example servers" in key.last_error


def test_other_modes_do_not_wait_for_a_delegation(env: UnitEnv) -> None:
    env.app.onboarding.add_esp(ESP, "demo")
    env.app.onboarding.add_customers([third_party("Beta", "beta.example", "beta.esp-dkim.test")])
    env.app.lifecycle.tick()
    assert env.key_of(ESP).state is State.ACTIVE
    assert env.key_of("beta.esp-dkim.test").state is State.ACTIVE


# --- the ESP's feedback-loop signature -------------------------------------------------------


def test_esp_key_signs_for_every_opted_in_customer_and_follows_its_rotation(env: UnitEnv) -> None:
    env.app.onboarding.add_esp(ESP, "demo")
    env.app.onboarding.add_customers(
        [
            row(esp_signature=ESP),
            third_party("Beta", "beta.example", "beta.esp-dkim.test", esp_signature=ESP),
            third_party("Gamma", "gamma.example", "gamma.esp-dkim.test"),  # no opt-in
        ]
    )
    env.dns.delegations[ACME_ZONE] = set(WANT_NS)
    env.app.lifecycle.tick()
    esp_key = env.key_of(ESP, State.ACTIVE)
    acme = env.key_of(ACME, State.ACTIVE)
    beta = env.key_of("beta.esp-dkim.test", State.ACTIVE)
    gamma = env.key_of("gamma.esp-dkim.test", State.ACTIVE)
    assert env.patterns() == {
        acme.key_id: {"*@acme.example"},
        esp_key.key_id: {"*@acme.example", "*@beta.example"},
        beta.key_id: {"*@beta.example"},
        gamma.key_id: {"*@gamma.example"},
    }
    assert len(env.signer.entries) == 5
    esp_entries = [e for e in env.signer.entries if e.key_id == esp_key.key_id]
    esp_path = str(env.keystore.path(esp_key.key_id))
    assert {(e.domain, e.selector, e.key_path) for e in esp_entries} == {
        (ESP, esp_key.selector, esp_path)
    }
    # OpenDKIM: the ESP key once in the KeyTable, once per customer in the SigningTable
    key_table = render_key_table(env.signer.entries)
    assert sum(ln.startswith(esp_key.key_id + " ") for ln in key_table.splitlines()) == 1
    signing = render_signing_table(env.signer.entries).splitlines()
    assert f"*@acme.example {esp_key.key_id}" in signing
    assert f"*@beta.example {esp_key.key_id}" in signing
    assert f"*@gamma.example {esp_key.key_id}" not in signing

    # the ESP key rotates: every opted-in customer moves to the new one together
    env.clock.advance(5)
    env.app.rotation.request(ESP, "alice", "fbl key rotation")
    env.app.lifecycle.tick()
    new_esp = env.key_of(ESP, State.ACTIVE)
    assert new_esp.key_id != esp_key.key_id
    assert env.key(esp_key.key_id).state is State.DRAINING
    assert env.patterns() == {
        acme.key_id: {"*@acme.example"},
        new_esp.key_id: {"*@acme.example", "*@beta.example"},
        beta.key_id: {"*@beta.example"},
        gamma.key_id: {"*@gamma.example"},
    }
    assert esp_key.key_id not in render_key_table(env.signer.entries)
    # a rewrite from the log alone gives the same entries
    live = sorted((e.key_id, e.signing_pattern) for e in env.signer.entries)
    env.app.signing.sync()
    assert sorted((e.key_id, e.signing_pattern) for e in env.signer.entries) == live


def test_customer_rotation_keeps_the_esp_signature(env: UnitEnv) -> None:
    env.app.onboarding.add_esp(ESP, "demo")
    env.app.onboarding.add_customers([row(esp_signature=ESP)])
    env.dns.delegations[ACME_ZONE] = set(WANT_NS)
    env.app.lifecycle.tick()
    esp_key = env.key_of(ESP, State.ACTIVE)
    first = env.key_of(ACME, State.ACTIVE)
    env.clock.advance(5)
    env.app.rotation.request(ACME, "alice", "customer rotation")
    env.app.lifecycle.tick()
    second = env.key_of(ACME, State.ACTIVE)
    assert second.key_id != first.key_id
    assert env.patterns() == {
        second.key_id: {"*@acme.example"},
        esp_key.key_id: {"*@acme.example"},
    }


def test_esp_without_opted_in_customers_has_no_signing_entry(env: UnitEnv) -> None:
    env.app.onboarding.add_esp(ESP, "demo")
    env.app.lifecycle.tick()
    assert env.key_of(ESP).state is State.ACTIVE
    assert env.signer.entries == []


def test_key_table_lists_a_shared_key_once(tmp_path: Path) -> None:
    def entry(key_id: str, domain: str, pattern: str, second: bool = False) -> SigningEntry:
        path = str(tmp_path / f"{key_id}.pem")
        return SigningEntry(key_id, domain, "s1.myesp", path, pattern, second=second)

    entries = [
        entry("esp0000000000001", ESP, "*@a.example", second=True),
        entry("cust000000000001", "a.example", "*@a.example"),
        entry("esp0000000000001", ESP, "*@b.example", second=True),
        entry("esp0000000000001", ESP, "*@c.example", second=True),
    ]
    lines = [ln for ln in render_key_table(entries).splitlines() if not ln.startswith("#")]
    assert lines == [  # one line per key, in a stable order
        f"cust000000000001 a.example:s1.myesp:{tmp_path / 'cust000000000001.pem'}",
        f"esp0000000000001 {ESP}:s1.myesp:{tmp_path / 'esp0000000000001.pem'}",
    ]
    signing = [ln for ln in render_signing_table(entries).splitlines() if not ln.startswith("#")]
    assert signing == [  # per sender: the customer's own signature, then the ESP's
        "*@a.example cust000000000001",
        "*@a.example esp0000000000001",
        "*@b.example esp0000000000001",
        "*@c.example esp0000000000001",
    ]


# --- CLI ---------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    # as in test_cli: the CLI points logging at the runner's stderr, gone after the invoke
    handlers = list(logging.getLogger().handlers)
    yield
    structlog.reset_defaults()
    root = logging.getLogger()
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    """test_cli's config plus the ESP's nameserver names: no command here contacts DNS."""
    path = write_config(tmp_path)
    text = path.read_text().replace(
        "[dns]\n", '[dns]\nesp_nameservers = ["dkim1.esp.test", "dkim2.esp.test"]\n'
    )
    path.write_text(text)
    return path


def test_cli_esp_add_then_customer_with_esp_signature(cfg: Path) -> None:
    out = ok(cfg, "esp", "add", ESP, "--policy", "demo").stdout
    assert f"added ESP signing domain {ESP} (zone {ESP})" in out
    out = ok(
        cfg,
        *customer_add("Acme", ACME, "ns-delegation", esp_signature=ESP),
    ).stdout
    assert f"Acme: ns-delegation, d={ACME}, zone {ACME_ZONE}" in out
    assert f"Delegate {ACME_ZONE}" in out
    assert f"{ACME_ZONE}. 86400 IN NS dkim1.esp.test." in out
    assert f"{ACME_ZONE}. 86400 IN NS dkim2.esp.test." in out
    out = ok(
        cfg,
        *customer_add("Beta", "beta.example", "third-party", signing_domain="beta.esp-dkim.test"),
    ).stdout
    assert "Nothing to add" in out and " IN NS " not in out
    assert event_count(cfg) == 3
    listing = ok(cfg, "customer", "list").stdout
    acme_line = next(ln for ln in listing.splitlines() if "Acme" in ln)
    assert "ns-delegation" in acme_line and ESP in acme_line and "*@acme.example" in acme_line
    beta_line = next(ln for ln in listing.splitlines() if "Beta" in ln)
    assert "beta.esp-dkim.test" in beta_line and "*@beta.example" in beta_line
    assert ESP not in beta_line
    assert not any(ESP in ln and "Acme" not in ln for ln in listing.splitlines())


def test_cli_customer_add_refusals_are_one_line(cfg: Path) -> None:
    ok(cfg, "domain", "add", "plain.example", "--policy", "demo")
    line = refused(
        cfg,
        *customer_add("Acme", ACME, "ns-delegation", esp_signature="plain.example"),
    )
    assert "esp_signature: plain.example is not an ESP signing domain" in line
    line = refused(
        cfg,
        *customer_add("Beta", "beta.example", "third-party"),
    )
    assert "signing_domain:" in line


def test_cli_customer_import_bad_row_changes_nothing(cfg: Path, tmp_path: Path) -> None:
    ok(cfg, "esp", "add", ESP, "--policy", "demo")
    csv_file = tmp_path / "customers.csv"
    csv_file.write_text(
        "customer,domain,mode,policy,signing_domain,esp_signature\n"
        f"Acme,{ACME},ns-delegation,demo,,{ESP}\n"
        "Gamma,gamma.example,third-party,demo,gamma.esp-dkim.test,\n"
        "Delta,delta.example,third-party,demo,mail.delta.example,\n"
    )
    line = refused(cfg, "customer", "import", str(csv_file))
    assert "customers.csv line 4: signing_domain: mail.delta.example is inside" in line
    assert event_count(cfg) == 1
    csv_file.write_text(csv_file.read_text().replace("mail.delta.example", "delta.esp-dkim.test"))
    out = ok(cfg, "customer", "import", str(csv_file)).stdout
    assert "imported 3 customer domains" in out
    assert f"{ACME_ZONE}. 86400 IN NS dkim1.esp.test." in out
    assert out.count("Nothing to add") == 2
    assert event_count(cfg) == 4
    listing = ok(cfg, "customer", "list").stdout
    for name in ("Acme", "Gamma", "Delta"):
        assert name in listing
    assert "delta.esp-dkim.test" in listing and "*@delta.example" in listing


def test_cli_customer_import_header_must_name_the_required_columns(
    cfg: Path, tmp_path: Path
) -> None:
    csv_file = tmp_path / "customers.csv"
    csv_file.write_text("customer,domain,policy\nAcme,acme.example,demo\n")
    line = refused(cfg, "customer", "import", str(csv_file))
    assert "header lacks mode" in line
    csv_file.write_text("customer,domain,mode,policy\n")
    assert "no customer rows" in refused(cfg, "customer", "import", str(csv_file))
    assert event_count(cfg) == 0


def test_cli_customer_import_bad_mode_names_line_and_field(cfg: Path, tmp_path: Path) -> None:
    csv_file = tmp_path / "c.csv"
    csv_file.write_text(
        "customer,domain,mode,policy\nAcme,acme.example,ns-delegation,demo\nB,b.example,dkim,demo\n"
    )
    line = refused(cfg, "customer", "import", str(csv_file))
    assert "c.csv line 3: mode: 'dkim' is not one of" in line
    assert run(cfg, "customer", "list").exit_code == 0
    assert "Acme" not in ok(cfg, "customer", "list").stdout


def test_a_wildcard_pattern_never_covers_another_identitys_domain(env: UnitEnv) -> None:
    # real OpenDKIM (MultipleSignatures) signs with every matching line while rspamd, Exim
    # and JSON pick one: two identities matching one sender would make the targets disagree
    env.app.onboarding.add_identity("corp.example", "demo", signing_pattern="*@*.corp.example")
    before = env.events()
    with pytest.raises(InputError, match=r"shop\.corp\.example is signed by \*@\*\.corp\.exa"):
        env.app.onboarding.add_customers([row("shop.corp.example", customer="Shop")])
    with pytest.raises(InputError, match=r"a\.b\.corp\.example is signed by \*@\*\.corp\."):
        env.app.onboarding.add_identity("a.b.corp.example", "demo")
    assert env.events() == before
    env.app.onboarding.add_identity("corp.example.net", "demo")  # not under corp.example
    # the other way round: a pattern over a domain that is already someone's
    env.app.onboarding.add_customers([row("shop.retail.example", customer="Shop")])
    before = env.events()
    with pytest.raises(InputError, match=r"would also sign shop\.retail\.example, .*Shop"):
        env.app.onboarding.add_identity(
            "retail.example", "demo", signing_pattern="*@*.retail.example"
        )
    assert env.events() == before
    env.app.onboarding.add_identity("retail.example", "demo")  # its exact pattern is fine
    assert env.events() == before + 1
