"""Keeping watch against real nameservers: the daemon (a subprocess) watches every 2 s. A
TXT record deleted on the BIND primary behind rotator's back (an RFC 2136 UPDATE with the
zone's TSIG key) is found, named by server, republished (back on the secondary through
NOTIFY + IXFR) and resolved; a customer's NS delegation removed in the customer's own BIND
puts the identity into "awaiting customer DNS" until the customer puts it back, also when the
ESP's own key, on a daily watch, went live before the customer's."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import dns.name
import dns.query
import dns.tsigkeyring
import dns.update
import pytest

from rotator.demo.localdns import BindPair, ensure_loopback_alias
from rotator.domain import events as ev
from rotator.ports import LogFilter
from tests.support.cli import customer_add

from .rotatorenv import RotatorEnv
from .test_tenancy import ACME_ZONE, ESP_ZONE, Tenancy

pytestmark = pytest.mark.integration

DOMAIN = "example.test"
WATCHED = """description = "The demo lifecycle, no rotation in sight, watched every 2 s"

[key]
algorithm = "ed25519"

[rotation]
interval = "1h"

[drain]
max_queue_time = "3s"
multiplier = 3

[dns]
ttl = 2

[selector]
template = "w{hh}{mi}{ss}.{esp}"
esp = "myesp"

[verify]
timeout = "30s"

[retry]
base = "0.5s"
max = "4s"

[watch]
interval = "2s"
"""


def watched_policies(tmp: Path) -> Path:
    policies = tmp / "watch-policies"
    policies.mkdir(mode=0o755)
    policies.chmod(0o755)  # whatever the umask: rotator refuses a group-writable policy dir
    (policies / "watched.toml").write_text(WATCHED)
    (policies / "watched.toml").chmod(0o644)
    return policies


def use_policies(env: RotatorEnv, policies: Path) -> None:
    text = env.config.read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("policy_dir"))
    env.config.write_text(text.replace(line, f'policy_dir = "{policies}"'))


def events_of(
    env: RotatorEnv, kind: type[ev.Event], key_id: str | None = None, identity: str | None = None
) -> list[ev.Event]:
    store = env.store()
    try:
        flt = LogFilter(types=(kind.__name__,), key_id=key_id, identity=identity)
        return [s.event for s in store.events(flt)]
    finally:
        store.close()


def delete_txt(bind: BindPair, zone: str, name: str) -> None:
    """What an operator with the zone's TSIG key (or a stray script) does on the primary."""
    update = dns.update.UpdateMessage(
        zone,
        keyring=dns.tsigkeyring.from_text({bind.tsig_name: bind.tsig_secret}),
        keyname=dns.name.from_text(bind.tsig_name),
    )
    update.delete(name, "TXT")
    r = dns.query.tcp(update, bind.primary, port=bind.port, timeout=5)
    assert r.rcode() == 0


@pytest.mark.timeout(120)
def test_record_deleted_on_the_primary_is_found_republished_and_resolved(
    tmp_path: Path, bind_factory: Callable[..., BindPair]
) -> None:
    bind = bind_factory(tmp_path / "bind", zones=(DOMAIN,))
    env = RotatorEnv(tmp_path, bind, watched_policies(tmp_path))
    try:
        env.cli("domain", "add", DOMAIN, "--policy", "watched")
        env.start()
        key = env.wait_for("key active", lambda: env.key_in_state(DOMAIN, "active"))
        name = key.record_name
        assert {w: a[2] for w, a in env.answers(name).items()} == {
            "primary": [key.record],
            "secondary": [key.record],
        }
        assert events_of(env, ev.DriftDetected) == []  # watched for a while: all well

        delete_txt(bind, DOMAIN, name)
        drift = env.wait_for(
            "DriftDetected",
            lambda: next(iter(events_of(env, ev.DriftDetected, key_id=key.key_id)), None),
        )
        assert isinstance(drift, ev.DriftDetected)
        primary = "{}:{}".format(*bind.server("primary"))
        assert primary in drift.server, drift  # the server, named
        assert "NXDOMAIN" in drift.answered, drift  # and what it answered
        assert drift.republished
        # republished on the primary, and on the secondary by NOTIFY + IXFR
        env.wait_for(
            "record back on both servers",
            lambda: all(a[2] == [key.record] for a in env.answers(name).values()),
            10,
        )
        env.wait_for(
            "DriftResolved", lambda: events_of(env, ev.DriftResolved, key_id=key.key_id), 20
        )
        assert len(events_of(env, ev.DriftDetected)) == 1
        assert env.key_in_state(DOMAIN, "active").drift == ""
        log = env.cli("log", "--type", "DriftDetected").stdout
        assert primary in log and "NXDOMAIN" in log
        assert env.stop() == 0
    finally:
        env.close()


@pytest.mark.timeout(180)
def test_customer_delegation_removed_is_awaiting_customer_dns_until_restored(
    tmp_path: Path, bind_factory: Callable[..., BindPair]
) -> None:
    if not ensure_loopback_alias("127.0.0.3") or not ensure_loopback_alias("127.0.0.4"):
        pytest.skip("needs loopback aliases 127.0.0.3/.4 for the customer's DNS (root)")
    ten = Tenancy(tmp_path, bind_factory)
    env = ten.env
    try:
        use_policies(env, watched_policies(tmp_path))
        env.cli(*customer_add("Acme", "acme.test", "ns-delegation", policy="watched"))
        ten.delegate()
        env.start()
        key = env.wait_for("acme key active", lambda: env.key_in_state("acme.test", "active"), 60)

        # the customer's IT drops the NS records from acme.test
        ten.customer_update(("delete", f"{ACME_ZONE}.", "NS", None))
        broken = env.wait_for(
            "CustomerDnsBroken",
            lambda: next(iter(events_of(env, ev.CustomerDnsBroken, identity="acme.test")), None),
        )
        assert isinstance(broken, ev.CustomerDnsBroken)
        assert broken.problem.startswith("awaiting customer DNS"), broken
        assert f"does not delegate {ACME_ZONE}" in broken.problem, broken
        rows = [json.loads(x) for x in env.cli("status", "--json").stdout.splitlines()]
        (row,) = [r for r in rows if r["state"] == "customer DNS"]
        assert (row["domain"], row["last_error"]) == ("acme.test", broken.problem)
        # the key keeps signing (revoking it would break mail); the ESP's servers still
        # serve its record, so that is no drift
        assert env.key_in_state("acme.test", "active").key_id == key.key_id
        signing = (env.workdir / "opendkim" / "SigningTable").read_text()
        assert f"*@acme.test {key.key_id}" in signing
        assert events_of(env, ev.DriftDetected) == []

        ten.delegate()  # put back
        env.wait_for(
            "CustomerDnsRestored",
            lambda: events_of(env, ev.CustomerDnsRestored, identity="acme.test"),
        )
        assert len(events_of(env, ev.CustomerDnsBroken)) == 1  # once, not once per pass
        rows = [json.loads(x) for x in env.cli("status", "--json").stdout.splitlines()]
        assert [r for r in rows if r["state"] == "customer DNS"] == []
        assert env.stop() == 0
    finally:
        env.close()


@pytest.mark.timeout(180)
def test_a_customer_on_a_short_interval_is_watched_after_a_daily_esp_key(
    tmp_path: Path, bind_factory: Callable[..., BindPair]
) -> None:
    # the ESP's own key, on the default daily watch, goes live first: the customer's policy
    # still gets its 2 s pass from the moment the customer's key is active
    if not ensure_loopback_alias("127.0.0.3") or not ensure_loopback_alias("127.0.0.4"):
        pytest.skip("needs loopback aliases 127.0.0.3/.4 for the customer's DNS (root)")
    ten = Tenancy(tmp_path, bind_factory)
    env = ten.env
    try:
        policies = watched_policies(tmp_path)
        daily = WATCHED.replace('[watch]\ninterval = "2s"\n', "")  # the default: 1d
        (policies / "daily.toml").write_text(daily)
        (policies / "daily.toml").chmod(0o644)
        use_policies(env, policies)
        env.cli("esp", "add", ESP_ZONE, "--policy", "daily")
        env.start()
        env.wait_for("ESP key active", lambda: env.key_in_state(ESP_ZONE, "active"), 60)
        time.sleep(2)  # four ticks: the watch has read its policies (the daily one) already

        env.cli(*customer_add("Acme", "acme.test", "ns-delegation", policy="watched"))
        ten.delegate()
        env.wait_for("acme key active", lambda: env.key_in_state("acme.test", "active"), 60)
        ten.customer_update(("delete", f"{ACME_ZONE}.", "NS", None))
        # 2 s of watch interval, the 0.2 s second look, ticks of 0.5 s: well inside 10 s
        broken = env.wait_for(
            "CustomerDnsBroken",
            lambda: next(iter(events_of(env, ev.CustomerDnsBroken, identity="acme.test")), None),
            10,
        )
        assert isinstance(broken, ev.CustomerDnsBroken)
        assert f"does not delegate {ACME_ZONE}" in broken.problem, broken
        assert env.stop() == 0
    finally:
        env.close()
