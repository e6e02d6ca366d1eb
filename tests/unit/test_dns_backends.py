"""Which backend publishes a zone: `[[dns.backends]]` by longest suffix, else the `[dns]`
primary; a zone nothing serves is refused before anything is recorded, and a config that
names backends badly is one line at load."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from rotator.adapters.dns.router import Route, ZoneRouter
from rotator.domain.errors import InputError, PublishError
from rotator.domain.reasons import Reason
from rotator.ports import RecordChange, ZoneChanges

from .clirun import ok, refused, write_config
from .conftest import UnitEnv


class Recording:
    def __init__(self, name: str, fail: str | None = None) -> None:
        self.name = name
        self.fail = fail
        self.batches: list[list[str]] = []

    def publish(self, batch: Sequence[ZoneChanges]) -> list[str | PublishError]:
        self.batches.append([zone for zone, _ in batch])
        return [PublishError(self.fail) if self.fail else self.name for _ in batch]

    def zone_problem(self, zone: str) -> str | None:
        return f"{zone} is not served" if zone.startswith("no.") else None

    def serves(self, zone: str) -> bool:
        return True

    def in_rounds(self, zone: str) -> bool:
        return self.name == "updates"


def change(zone: str) -> ZoneChanges:
    return zone, [RecordChange(f"s1.myesp._domainkey.{zone}.", 60, "v=DKIM1; p=")]


def test_the_longest_suffix_picks_the_backend_and_the_rest_go_to_the_primary() -> None:
    primary, pdns, inner = Recording("primary"), Recording("pdns"), Recording("inner")
    router = ZoneRouter(
        [
            Route("pdns", ("dkim.esp.test",), pdns),
            Route("inner", ("b.dkim.esp.test",), inner),
        ],
        primary,
    )
    batch = [
        change("a.dkim.esp.test"),
        change("x.b.dkim.esp.test"),
        change("customer.test"),
        change("dkim.esp.test"),
    ]
    assert router.publish(batch) == ["pdns", "inner", "primary", "pdns"]
    # each backend got its zones in one batch (a file backend rebuilds once)
    assert pdns.batches == [["a.dkim.esp.test", "dkim.esp.test"]]
    assert inner.batches == [["x.b.dkim.esp.test"]]
    assert primary.batches == [["customer.test"]]
    assert router.route("xdkim.esp.test") == Route("[dns] primary", (), primary)


def test_a_zone_no_backend_serves_fails_with_its_own_code() -> None:
    pdns = Recording("pdns")
    router = ZoneRouter([Route("pdns", ("dkim.esp.test",), pdns)], None)
    ok_, missing = router.publish([change("a.dkim.esp.test"), change("customer.test")])
    assert ok_ == "pdns"
    assert isinstance(missing, PublishError) and missing.code == Reason.DNS_NO_BACKEND
    assert "no DNS backend serves zone customer.test" in missing.reason
    assert not router.serves("customer.test") and router.serves("a.dkim.esp.test")
    assert router.zone_problem("no.dkim.esp.test") == (
        "DNS backend pdns: no.dkim.esp.test is not served"
    )


def test_one_backend_failing_leaves_the_others_results() -> None:
    router = ZoneRouter(
        [Route("down", ("down.test",), Recording("down", fail="HTTP 503"))], Recording("p")
    )
    results = router.publish([change("a.down.test"), change("up.test")])
    assert isinstance(results[0], PublishError) and results[0].reason == "HTTP 503"
    assert results[1] == "p"


def test_onboarding_a_zone_without_a_backend_records_nothing(env: UnitEnv) -> None:
    env.dns.unserved.add("plain.example")
    before = env.store.info()["events"]
    with pytest.raises(InputError, match=r"no DNS backend serves zone plain\.example"):
        env.app.onboarding.add_identity("plain.example", "demo")
    assert env.store.info()["events"] == before


BACKEND = """
[[dns.backends]]
name = "second"
kind = "rfc2136"
zones = ["dkim.esp.test"]
primary = "127.0.0.1:1"
tsig_name = "other"
tsig_secret_file = "second.tsig"
"""


def backends_only(tmp_path: Path, table: str = BACKEND) -> Path:
    cfg = write_config(tmp_path)
    text = cfg.read_text()
    start = text.index("[dns]")
    end = text.index("[signer]")
    cfg.write_text(text[:start] + "[dns]\n" + table + "\n" + text[end:])
    return cfg


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ("", "dns.primary: missing; set primary"),
        (BACKEND.replace('kind = "rfc2136"', 'kind = "bind9"'), "kind 'bind9' is not one"),
        (
            BACKEND.replace('name = "second"', 'name = "Second Server"'),
            "backend Second Server: name: missing or not a name",
        ),
        (BACKEND.replace('zones = ["dkim.esp.test"]', "zones = []"), "backend second: zones:"),
        (BACKEND.replace('primary = "127.0.0.1:1"', 'primary = "ns1.test"'), "not an IP"),
        (BACKEND + 'colour = "blue"\n', "backend second: unknown setting 'colour'"),
        (BACKEND + BACKEND.replace('"second"', '"third"'), "zone dkim.esp.test is given to two"),
        (BACKEND + BACKEND, "two backends have the same name"),
    ],
)
def test_bad_backends_are_one_line_at_load(tmp_path: Path, table: str, problem: str) -> None:
    line = refused(backends_only(tmp_path, table), "init")
    assert problem in line, line


def test_tsig_settings_without_a_primary_are_refused(tmp_path: Path) -> None:
    table = BACKEND.replace("[[dns.backends]]", 'tsig_name = "x"\n\n[[dns.backends]]')
    assert "the TSIG key is for primary, which is not set" in refused(
        backends_only(tmp_path, table), "policy", "check"
    )


def test_init_checks_that_each_backend_serves_its_zones(tmp_path: Path) -> None:
    cfg = backends_only(tmp_path)
    assert "demo" in ok(cfg, "policy", "check").output  # a config of backends alone loads
    secret = tmp_path / "second.tsig"
    secret.write_text("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0xMjM0\n")
    secret.chmod(0o640)
    line = refused(cfg, "init")
    assert "dns.backends: DNS backend second: the primary 127.0.0.1:1 did not answer" in line
    secret.chmod(0o644)
    assert "readable by others" in refused(cfg, "init")


def test_a_zone_takes_a_batch_in_rounds_as_its_backend_does() -> None:
    primary, updates = Recording("primary"), Recording("updates")
    router = ZoneRouter([Route("updates", ("u.example",), updates)], primary)
    assert router.in_rounds("a.u.example")
    assert not router.in_rounds("other.example")  # the primary here: one change per batch
    assert not ZoneRouter([Route("updates", ("u.example",), updates)], None).in_rounds("x.test")
