"""Keeping watch with in-memory DNS: drift of a key's record on one or every server (gone,
changed, no AA) is recorded once, republished and resolved; a server that cannot be asked
proves nothing; a customer's broken delegation or CNAMEs put the identity into "awaiting
customer DNS" and back; and the slicing checks every watched key once per interval, a
tick only its share. The real-DNS counterpart is tests/integration/test_watch.py."""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from rotator.app import Application, CustomerRow
from rotator.app import watch as watch_module
from rotator.app.watch import SPACE, Watch, key_slices
from rotator.domain import events as ev
from rotator.domain.model import KeyState
from rotator.domain.policy import Policy
from rotator.domain.states import State
from rotator.ports import Observation

from .clirun import ok, write_config
from .conftest import MakeEnv, UnitEnv, default_policies
from .fakes import demo_policy

INTERVAL = 100  # seconds: the watch interval of the tests' policy
ACME = "acme.example"
ACME_ZONE = "myesp._domainkey.acme.example"
ESP_NS = ("dkim1.esp.test", "dkim2.esp.test")
BOTH = "ns1 (127.0.0.1:53), ns2 (127.0.0.2:53)"
NS2 = "ns2 (127.0.0.2:53)"
FOREIGN = "v=DKIM1; k=ed25519; p=c29tZW9uZSBlbHNlJ3Mga2V5"


def watched_policy(interval: str = f"{INTERVAL}s", name: str = "demo") -> Policy:
    # rotation far beyond the tests' horizon: only the watch acts
    policy = demo_policy(rotation={"interval": "1h"}, watch={"interval": interval})
    return dataclasses.replace(policy, name=name)


@pytest.fixture(autouse=True)
def _no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watch_module, "CONFIRM_PAUSE", 0.0)


@pytest.fixture
def env(make_env: MakeEnv) -> UnitEnv:
    return make_env(policies={"demo": watched_policy()}, esp_nameservers=ESP_NS)


def active(env: UnitEnv, domain: str = "example.com") -> KeyState:
    env.app.onboarding.add_identity(domain, "demo")
    env.app.lifecycle.tick()
    return env.key_of(domain, State.ACTIVE)


def full_pass(env: UnitEnv, seconds: float = INTERVAL) -> None:
    """One whole watch interval in one tick: every watched key is looked at once."""
    env.clock.advance(seconds)
    env.app.lifecycle.tick()


def found(env: UnitEnv, *types: type[ev.Event]) -> list[ev.Event]:
    return [s.event for s in env.store.events() if isinstance(s.event, types)]


def drift_events(env: UnitEnv) -> list[ev.Event]:
    return found(env, ev.DriftDetected, ev.DriftResolved)


# --- pure: the slices -----------------------------------------------------------------------


def spans(slices: list[tuple[str, str | None]]) -> list[tuple[int, int]]:
    return [(int(lo or "0", 16), SPACE if hi is None else int(hi, 16)) for lo, hi in slices]


def test_slices_over_one_interval_partition_the_key_space_once() -> None:
    interval = timedelta(seconds=INTERVAL)
    start = datetime(2026, 11, 24, 12, 0, 30, tzinfo=UTC)  # 30 % into a circle: it wraps
    times = [start + timedelta(seconds=s) for s in (0, 0.001, 7, 33, 69.5, 71, 99.9, 100)]
    covered = sorted(
        span for a, b in itertools.pairwise(times) for span in spans(key_slices(a, b, interval))
    )
    assert covered[0][0] == 0 and covered[-1][1] == SPACE
    assert all(left[1] == right[0] for left, right in itertools.pairwise(covered))
    # wrapped once (at 70 s): the slice through the end of the space is two ranges
    pairs = list(itertools.pairwise(times))
    assert [len(key_slices(a, b, interval)) for a, b in pairs] == [1, 1, 1, 1, 2, 1, 1]
    assert key_slices(start, start, interval) == []
    assert key_slices(start, start - timedelta(seconds=1), interval) == []  # clock set back
    assert key_slices(start, start + interval, interval) == [("", None)]
    assert key_slices(start, start + 5 * interval, interval) == [("", None)]  # once, not 5x


# --- a key's record -------------------------------------------------------------------------


def test_record_deleted_behind_rotators_back_is_detected_republished_resolved(
    env: UnitEnv,
) -> None:
    key = active(env)
    updates = env.dns.updates
    full_pass(env)
    assert drift_events(env) == []  # all well: nothing recorded

    del env.dns.records[key.record_name]  # someone deletes the TXT on the primary
    full_pass(env)
    (drift,) = drift_events(env)
    assert isinstance(drift, ev.DriftDetected)
    assert (drift.key_id, drift.server, drift.answered, drift.republished) == (
        key.key_id,
        BOTH,
        "NXDOMAIN",
        True,
    )
    assert env.dns.records[key.record_name] == key.record  # back, by the same UPDATE
    assert env.dns.updates == updates + 1
    now = env.key(key.key_id)
    assert (now.state, now.drift) == (State.ACTIVE, f"{BOTH}: NXDOMAIN")
    (row,) = env.app.queries.status("example.com")
    assert row.drift == f"{BOTH}: NXDOMAIN"

    full_pass(env)
    assert [type(e).__name__ for e in drift_events(env)] == ["DriftDetected", "DriftResolved"]
    assert env.key(key.key_id).drift == ""
    assert env.app.queries.status("example.com")[0].drift == ""
    assert env.store.rebuild(check_only=True) == []


def test_record_changed_on_one_server_names_that_server_and_what_it_served(
    env: UnitEnv,
) -> None:
    key = active(env)
    env.dns.tampered[("ns2", key.record_name)] = FOREIGN
    full_pass(env)
    (drift,) = drift_events(env)
    assert isinstance(drift, ev.DriftDetected)
    assert (drift.server, drift.answered, drift.republished) == (NS2, f'"{FOREIGN}"', True)
    assert ("ns2", key.record_name) not in env.dns.tampered  # the replaced RRset won
    full_pass(env)
    assert isinstance(drift_events(env)[-1], ev.DriftResolved)

    long = "v=DKIM1; k=rsa; p=" + "A" * 300
    env.dns.tampered[("ns1", key.record_name)] = long
    full_pass(env)
    drift = drift_events(env)[-1]
    assert isinstance(drift, ev.DriftDetected)
    assert drift.server == "ns1 (127.0.0.1:53)"
    assert drift.answered == f'"{long[:60]}..."'  # quoted, clipped


def test_answer_without_aa_is_drift_recorded_once_while_it_lasts(env: UnitEnv) -> None:
    key = active(env)
    env.dns.lame.add("ns2")
    for _ in range(3):
        full_pass(env)
    (drift,) = drift_events(env)  # once, not once per pass
    assert isinstance(drift, ev.DriftDetected)
    assert (drift.server, drift.answered) == (NS2, "an answer without AA (not authoritative)")
    assert env.key(key.key_id).drift.startswith(NS2)
    env.dns.lame.clear()
    full_pass(env)
    assert [type(e).__name__ for e in drift_events(env)] == ["DriftDetected", "DriftResolved"]


def test_failed_republish_is_said_and_retried_without_a_new_event(env: UnitEnv) -> None:
    key = active(env)
    del env.dns.records[key.record_name]
    env.dns.fail_publish = "REFUSED by the primary"
    full_pass(env)
    (drift,) = drift_events(env)
    assert isinstance(drift, ev.DriftDetected) and drift.republished is False
    env.dns.fail_publish = None
    full_pass(env)  # the same drift: republished again, nothing new on record
    assert len(drift_events(env)) == 1
    assert env.dns.records[key.record_name] == key.record
    full_pass(env)
    assert isinstance(drift_events(env)[-1], ev.DriftResolved)


def test_a_server_that_cannot_be_asked_proves_nothing_either_way(env: UnitEnv) -> None:
    key = active(env)
    env.dns.unreachable.add("ns2")
    full_pass(env)
    assert drift_events(env) == []  # a timeout is not drift
    env.dns.unreachable.clear()

    env.dns.lame.add("ns2")
    full_pass(env)
    assert len(drift_events(env)) == 1
    env.dns.lame.clear()
    env.dns.unreachable.add("ns2")  # ns1 is fine, ns2 cannot be asked: no verdict
    full_pass(env)
    assert len(drift_events(env)) == 1 and env.key(key.key_id).drift
    env.dns.unreachable.clear()
    full_pass(env)
    assert isinstance(drift_events(env)[-1], ev.DriftResolved)


def test_one_odd_answer_is_looked_at_twice_before_it_is_drift(
    env: UnitEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = active(env)
    real = env.dns.observe
    asked: list[str] = []

    def glitch_once(zone: str, name: str, deadline: float | None = None) -> list[Observation]:
        asked.append(name)
        answers = real(zone, name)
        if len(asked) == 1:  # a lost answer's retry landing on a server mid-reload
            return [dataclasses.replace(answers[0], rcode="SERVFAIL"), answers[1]]
        return answers

    monkeypatch.setattr(env.dns, "observe", glitch_once)
    full_pass(env)
    assert asked == [key.record_name, key.record_name]  # the second look
    assert drift_events(env) == []


def test_customer_managed_record_is_reported_never_republished(env: UnitEnv) -> None:
    env.app.onboarding.add_customers(
        [CustomerRow("Acme", "acme.com", "customer-key", "demo")], "op"
    )
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key = env.app.keyimport.import_key("acme.com", "cust1", pem, "op")
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    name = "cust1._domainkey.acme.com."
    env.dns.records[name] = f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
    env.app.lifecycle.tick()
    assert env.key(key.key_id).state is State.ACTIVE
    updates = env.dns.updates
    del env.dns.records[name]  # the customer removes their record
    full_pass(env)
    (drift,) = drift_events(env)
    assert isinstance(drift, ev.DriftDetected)
    assert (drift.server, drift.answered, drift.republished) == (BOTH, "NXDOMAIN", False)
    assert env.dns.updates == updates and name not in env.dns.records  # not ours to write


def test_draining_key_is_watched_inside_its_drain_window(make_env: MakeEnv) -> None:
    env = make_env(policies={"demo": watched_policy("10s")})  # drain window 30 s
    old = active(env)
    env.clock.advance(1)
    env.app.rotation.request("example.com", "alice", "rotate")
    env.app.lifecycle.tick()
    assert env.key(old.key_id).state is State.DRAINING
    del env.dns.records[old.record_name]
    full_pass(env, 10)
    (drift,) = drift_events(env)
    assert isinstance(drift, ev.DriftDetected) and drift.key_id == old.key_id
    assert env.dns.records[old.record_name] == old.record


def test_a_healthy_lifecycle_records_no_drift(make_env: MakeEnv) -> None:
    # watched every 10 s while keys publish, rotate, drain, revoke and go: revocations and
    # tombstones are the lifecycle's, never drift
    fast = dataclasses.replace(demo_policy(watch={"interval": "10s"}), name="demo")
    env = make_env(policies={"demo": fast})
    env.app.onboarding.add_identity("example.com", "demo")
    for _ in range(200):
        env.app.lifecycle.tick()
        env.clock.advance(1)
    assert len(env.keys("example.com")) >= 3
    assert any(k.state is State.DESTROYED for k in env.keys("example.com"))
    assert drift_events(env) == []


# --- the customer's DNS ---------------------------------------------------------------------


def acme_active(env: UnitEnv, mode: str = "ns-delegation", zone: str = "") -> KeyState:
    env.app.onboarding.add_customers([CustomerRow("Acme", ACME, mode, "demo", zone=zone)], "op")
    env.dns.delegations[ACME_ZONE] = set(ESP_NS)
    env.app.lifecycle.tick()
    return env.key_of(ACME, State.ACTIVE)


def test_delegation_removed_is_awaiting_customer_dns_then_restored(env: UnitEnv) -> None:
    first = acme_active(env)
    full_pass(env)
    assert found(env, ev.CustomerDnsBroken) == []

    del env.dns.delegations[ACME_ZONE]  # the customer's IT drops the NS records
    full_pass(env)
    full_pass(env)
    (broken,) = found(env, ev.CustomerDnsBroken)  # once, not once per pass
    assert isinstance(broken, ev.CustomerDnsBroken) and broken.identity == ACME
    assert broken.problem.startswith("awaiting customer DNS")
    assert "does not delegate" in broken.problem and "dkim1.esp.test" in broken.problem
    assert env.store.identity(ACME).dns_problem == broken.problem
    notices = [r for r in env.app.queries.identity_notices() if r.domain == ACME]
    assert [(r.state, r.last_error) for r in notices] == [("customer DNS", broken.problem)]
    assert drift_events(env) == []  # the ESP's servers still serve the record

    # the active key keeps signing; the next one is published but never goes live
    env.app.rotation.request(ACME, "alice", "rotation while the delegation is gone")
    env.app.lifecycle.tick()
    pending = env.key_of(ACME, State.PUBLISHED)
    assert "awaiting customer DNS" in (pending.last_error or "")
    assert set(env.patterns()) == {first.key_id}

    env.dns.delegation_error = "timeout asking the acme.example servers"
    full_pass(env)  # could not ask: no verdict either way
    assert found(env, ev.CustomerDnsRestored) == []
    env.dns.delegation_error = None
    env.dns.delegations[ACME_ZONE] = set(ESP_NS)
    full_pass(env)
    (restored,) = found(env, ev.CustomerDnsRestored)
    assert isinstance(restored, ev.CustomerDnsRestored) and restored.identity == ACME
    assert env.store.identity(ACME).dns_problem == ""
    assert env.key(pending.key_id).state is State.ACTIVE
    assert [r for r in env.app.queries.identity_notices() if r.domain == ACME] == []
    assert env.store.rebuild(check_only=True) == []


def test_delegation_to_other_servers_is_broken_too(env: UnitEnv) -> None:
    acme_active(env)
    env.dns.delegations[ACME_ZONE] = {"ns1.elsewhere.test", "ns2.elsewhere.test"}
    full_pass(env)
    (broken,) = found(env, ev.CustomerDnsBroken)
    assert isinstance(broken, ev.CustomerDnsBroken)
    assert "delegated to ns1.elsewhere.test, ns2.elsewhere.test" in broken.problem


def active_cname_key(env: UnitEnv) -> KeyState:
    """A cname-mode customer with 3 of its CNAMEs in place, its first key active."""
    zone = "cname.esp.test"
    env.app.onboarding.add_customers([CustomerRow("Acme", ACME, "cname", "demo", zone=zone)])
    env.dns.cnames = {f"myesp{n}._domainkey.{ACME}.": f"myesp{n}.{ACME}.{zone}." for n in (1, 2, 3)}
    env.app.lifecycle.tick()
    return env.key_of(ACME, State.ACTIVE)


def test_cname_removed_breaks_only_for_cnames_in_use(env: UnitEnv) -> None:
    key = active_cname_key(env)
    full_pass(env)  # 3 of 12 future CNAMEs: allowed (a notice), not broken
    assert found(env, ev.CustomerDnsBroken) == []
    del env.dns.cnames[key.lookup_name]
    full_pass(env)
    (broken,) = found(env, ev.CustomerDnsBroken)
    assert isinstance(broken, ev.CustomerDnsBroken)
    assert broken.problem == (
        f"awaiting customer DNS: CNAME {key.lookup_name} -> {key.record_name} is missing"
    )


def test_ping_pong_slot_removed_is_broken_and_restored(env: UnitEnv) -> None:
    zone = "cname.esp.test"
    env.app.onboarding.add_customers([CustomerRow("Acme", ACME, "ping-pong", "demo", zone=zone)])
    slots = {f"dkim{n}._domainkey.{ACME}.": f"dkim{n}.{ACME}.{zone}." for n in (1, 2)}
    env.dns.cnames = dict(slots)
    env.app.lifecycle.tick()
    assert env.key_of(ACME, State.ACTIVE).selector == "dkim1"
    del env.dns.cnames[f"dkim2._domainkey.{ACME}."]  # the slot the next rotation needs
    full_pass(env)
    (broken,) = found(env, ev.CustomerDnsBroken)
    assert isinstance(broken, ev.CustomerDnsBroken)
    assert "1 CNAMEs missing or wrong: dkim2._domainkey.acme.example." in broken.problem
    env.dns.cnames = dict(slots)
    full_pass(env)
    assert len(found(env, ev.CustomerDnsRestored)) == 1


# --- spreading the work ---------------------------------------------------------------------


def in_slices(key_id: str, slices: list[tuple[str, str | None]]) -> bool:
    return any(lo <= key_id and (hi is None or key_id < hi) for lo, hi in slices)


def test_one_interval_checks_every_key_once_each_tick_only_its_slice(
    make_env: MakeEnv,
) -> None:
    env = make_env(policies={"demo": watched_policy()})
    for n in range(40):
        env.app.onboarding.add_identity(f"d{n}.example", "demo")
    env.app.lifecycle.tick()  # all 40 active; the watch starts where the clock says
    keys = env.store.list_keys(state=State.ACTIVE)
    assert len(keys) == 40
    env.dns.observed.clear()
    interval = timedelta(seconds=INTERVAL)
    per_tick = []
    for _ in range(10):  # ten ticks of 10 s: one interval
        before, last = len(env.dns.observed), env.clock.now()
        full_pass(env, INTERVAL / 10)
        asked = env.dns.observed[before:]
        due = {
            k.record_name
            for k in keys
            if in_slices(k.key_id, key_slices(last, env.clock.now(), interval))
        }
        assert sorted(asked) == sorted(due)  # exactly its slice, each key once
        per_tick.append(len(asked))
    assert Counter(env.dns.observed) == {k.record_name: 1 for k in keys}
    assert max(per_tick) < 40  # spread over the interval, not all at once

    env.dns.observed.clear()
    full_pass(env, 5 * INTERVAL)  # a long pause: everything once, not five times
    assert Counter(env.dns.observed) == {k.record_name: 1 for k in keys}

    env.dns.observed.clear()
    fresh = Watch(env.ctx)  # a restart: begins where the clock says, with nothing
    fresh.tick(env.clock.now())
    assert env.dns.observed == []


def test_each_policy_is_watched_at_its_own_interval(make_env: MakeEnv) -> None:
    env = make_env(
        policies={
            "demo": watched_policy(f"{INTERVAL}s"),
            "slow": watched_policy(f"{10 * INTERVAL}s", name="slow"),
        }
    )
    for n in range(4):
        env.app.onboarding.add_identity(f"fast{n}.example", "demo")
        env.app.onboarding.add_identity(f"slow{n}.example", "slow")
    env.app.lifecycle.tick()
    keys = env.store.list_keys(state=State.ACTIVE)
    assert len(keys) == 8
    env.dns.observed.clear()
    for _ in range(100):  # 10 ticks per short interval, over one long interval
        full_pass(env, INTERVAL / 10)
    want = {k.record_name: 10 if k.policy == "demo" else 1 for k in keys}
    assert Counter(env.dns.observed) == want


SHORT = 2.0  # seconds: the customer's policy's watch interval
TICK = 0.5  # seconds between the daemon's ticks in these tests


def daily_and_short(make_env: MakeEnv) -> UnitEnv:
    """The ESP's own domains on the default daily watch, a customer on a 2 s one."""
    daily = demo_policy(rotation={"interval": "30d"}, watch={"interval": "1d"})
    return make_env(
        policies={
            "daily": dataclasses.replace(daily, name="daily"),
            "demo": watched_policy(f"{SHORT:g}s"),
        },
        esp_nameservers=ESP_NS,
    )


def restart(env: UnitEnv) -> None:
    """A new Application over the same store (the daemon started again), its first tick."""
    env.app = Application(env.ctx)
    env.app.lifecycle.startup()
    env.app.lifecycle.tick()


def ticks(env: UnitEnv, seconds: float) -> None:
    for _ in range(round(seconds / TICK)):
        env.clock.advance(TICK)
        env.app.lifecycle.tick()


@pytest.mark.parametrize("restarted", [False, True], ids=["running", "restarted"])
def test_a_short_interval_is_kept_from_its_first_key_on_after_a_daily_one(
    make_env: MakeEnv, restarted: bool
) -> None:
    env = daily_and_short(make_env)
    env.app.onboarding.add_identity("example.com", "daily")
    ticks(env, 5 * TICK)  # the ESP's key active and watched, at its daily pace
    assert env.key_of("example.com", State.ACTIVE).policy == "daily"
    if restarted:
        restart(env)
        ticks(env, 5 * TICK)
    acme_active(env)
    ticks(env, 5 * TICK)
    assert found(env, ev.CustomerDnsBroken) == []

    del env.dns.delegations[ACME_ZONE]
    ticks(env, SHORT)  # one short interval: the customer's key came round once
    (broken,) = found(env, ev.CustomerDnsBroken)
    assert isinstance(broken, ev.CustomerDnsBroken) and broken.identity == ACME


def test_a_key_activated_on_the_first_tick_after_a_restart_leaves_the_others_watched(
    make_env: MakeEnv,
) -> None:
    # the activation tells the watch of one policy before the watch has read the store:
    # the daily policy's keys are still read from the store and watched
    env = daily_and_short(make_env)
    env.app.onboarding.add_identity("example.com", "daily")
    env.app.lifecycle.tick()
    esp = env.key_of("example.com", State.ACTIVE)
    env.app.onboarding.add_customers([CustomerRow("Acme", ACME, "ns-delegation", "demo")], "op")
    env.dns.delegations[ACME_ZONE] = set(ESP_NS)
    restart(env)  # its first tick activates the customer's key
    assert env.key_of(ACME, State.ACTIVE).policy == "demo"
    del env.dns.records[esp.record_name]
    full_pass(env, 24 * 3600)  # the watch's first pass, a daily interval: the ESP's key too
    (drift,) = [e for e in drift_events(env) if isinstance(e, ev.DriftDetected)]
    assert isinstance(drift, ev.DriftDetected) and drift.key_id == esp.key_id


# --- status ---------------------------------------------------------------------------------


def test_status_shows_drift_and_customer_dns(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)  # its database is state/rotator.db: this environment's
    env = UnitEnv(tmp_path / "state", {**default_policies(), "demo": watched_policy()}, ESP_NS)
    try:
        key = active(env)
        acme_active(env)
        del env.dns.records[key.record_name]
        env.dns.fail_publish = "REFUSED"
        del env.dns.delegations[ACME_ZONE]
        full_pass(env)
    finally:
        env.store.close()
    text = ok(cfg, "status").stdout
    assert f"drift: {BOTH}: NXDOMAIN" in " ".join(text.split())
    assert "awaiting customer DNS" in text and "customer DNS" in text
    lines = [json.loads(x) for x in ok(cfg, "status", "--json").stdout.splitlines()]
    mine = next(x for x in lines if x["key_id"] == key.key_id)
    assert mine["drift"] == f"{BOTH}: NXDOMAIN"
    dns = next(x for x in lines if x["state"] == "customer DNS")
    assert dns["domain"] == ACME and dns["last_error"].startswith("awaiting customer DNS")


def test_a_standby_key_waits_while_the_customers_dns_is_broken(make_env: MakeEnv) -> None:
    # verified before the delegation went away: receivers would not find it, so it is not
    # switched to; the active key keeps signing until the customer's DNS is back
    env = make_env(esp_nameservers=ESP_NS)
    env.dns.delegations[ACME_ZONE] = set(ESP_NS)
    env.app.onboarding.add_customers([CustomerRow("Acme", ACME, "ns-delegation", "standby")])
    env.app.lifecycle.tick()
    env.app.lifecycle.tick()
    active, standby = env.key_of(ACME, State.ACTIVE), env.key_of(ACME, State.VERIFIED)
    now = env.clock.now()
    ident = env.store.identity(ACME)
    assert ident is not None
    # the fake DNS agrees with the event: a watch pass in the next tick (whether it comes to
    # this identity depends on where the random key ids fall) must find it broken too
    env.dns.delegations[ACME_ZONE] = {"ns1.elsewhere.test"}
    broken = ev.CustomerDnsBroken(at=now, identity=ACME, domain=ACME, problem="awaiting "
                                  "customer DNS: acme.example does not delegate")  # fmt: skip
    env.ctx.recorder.append([broken], [ident])
    env.clock.advance(3601)  # the standby's turn
    env.app.lifecycle.tick()
    assert env.key(standby.key_id).state is State.VERIFIED
    # the hand-made problem, or the watch's own words for the same break
    assert "awaiting customer DNS" in (env.key(standby.key_id).last_error or "")
    assert env.key(active.key_id).state is State.ACTIVE
    env.dns.delegations[ACME_ZONE] = set(ESP_NS)
    restored = ev.CustomerDnsRestored(at=env.clock.now(), identity=ACME, domain=ACME)
    again = env.store.identity(ACME)
    assert again is not None
    env.ctx.recorder.append([restored], [again])
    env.clock.advance(10)
    env.app.lifecycle.tick()
    assert env.key(standby.key_id).state is State.ACTIVE


def test_a_cname_lookup_without_an_answer_is_no_verdict_not_a_removal(env: UnitEnv) -> None:
    # A resolver that times out or answers SERVFAIL says nothing about the customer's CNAME:
    # the watch records it as unanswered; only an answer without the CNAME breaks it.
    key = active_cname_key(env)
    env.dns.cname_failing.add(key.lookup_name)
    full_pass(env)
    assert found(env, ev.CustomerDnsBroken) == []
    assert env.store.identity(ACME).dns_problem in ("", None)
    env.dns.cname_failing.clear()
    del env.dns.cnames[key.lookup_name]
    full_pass(env)
    assert len(found(env, ev.CustomerDnsBroken)) == 1
