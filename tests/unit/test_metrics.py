"""[metrics]: the config table, the scrape-time collector over a real SQLite store, the
tick counters fed from the log, readiness, and the HTTP endpoints on loopback. The daemon
scraped over HTTP with real BIND is tests/integration/test_metrics.py."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from rotator.app import CustomerRow, TickReport
from rotator.config.settings import load_config, parse_metrics
from rotator.domain import events as ev
from rotator.domain.errors import ConfigError
from rotator.domain.states import State
from rotator.metrics.daemon import StoreCollector
from rotator.metrics.http import Health, MetricsServer, wsgi_app
from rotator.metrics.leadership import LeaderCollector
from rotator.metrics.ticks import LABEL_VALUES_MAX, TickMetrics
from rotator.ports import Leader, Lease, Observation

from .clirun import write_config
from .conftest import MakeEnv, UnitEnv

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
ESP_NS = ("dkim1.esp.test", "dkim2.esp.test")


def parse(text: str) -> Samples:
    """Every sample of a text exposition, by (name, labels)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def scrape(*collectors: Any) -> Samples:
    registry = CollectorRegistry()
    for c in collectors:
        registry.register(c)
    return parse(generate_latest(registry).decode())


def collector(env: UnitEnv, per_identity: bool = False) -> StoreCollector:
    return StoreCollector(env.store, env.clock.now, per_identity)


# --- config ---------------------------------------------------------------------------------


def with_metrics(tmp_path: Path, table: str) -> Path:
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text() + "\n[metrics]\n" + table + "\n")
    return cfg


def test_metrics_are_off_unless_listen_is_set(tmp_path: Path) -> None:
    assert not load_config(write_config(tmp_path)).metrics.enabled
    assert not load_config(with_metrics(tmp_path, 'listen = ""')).metrics.enabled
    m = load_config(with_metrics(tmp_path, 'listen = "127.0.0.1:9470"')).metrics
    assert (m.enabled, m.host, m.port, m.per_identity) == (True, "127.0.0.1", 9470, False)
    m = load_config(with_metrics(tmp_path, 'listen = "[::1]"\nper_identity = true')).metrics
    assert (m.host, m.port, m.per_identity, m.listen) == ("::1", 9469, True, "[::1]:9469")
    assert load_config(with_metrics(tmp_path, 'listen = "localhost:9"')).metrics.port == 9


@pytest.mark.parametrize("listen", ["0.0.0.0:9469", "192.0.2.1:9469", "metrics.example:9469"])
def test_a_remote_address_needs_allow_remote(tmp_path: Path, listen: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(with_metrics(tmp_path, f'listen = "{listen}"'))
    text = str(caught.value)
    assert "metrics.listen" in text and "not a loopback address" in text
    assert "allow_remote = true" in text and '"127.0.0.1:9469"' in text
    assert "\n" not in text
    m = load_config(with_metrics(tmp_path, f'listen = "{listen}"\nallow_remote = true')).metrics
    assert m.enabled and m.port == 9469


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ("listen = 9469", "metrics.listen: must be a string"),
        ('listen = "127.0.0.1:99999"', "invalid port"),
        ('listen = "127.0.0.1"\nper_identity = "yes"', "metrics.per_identity: must be true"),
        ('listne = "127.0.0.1"', "metrics.listne: unknown key"),
    ],
)
def test_bad_metrics_tables_are_refused(tmp_path: Path, table: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_config(with_metrics(tmp_path, table))


# --- the collector --------------------------------------------------------------------------


def test_keys_by_state_and_policy_ages_and_next_times(env: UnitEnv) -> None:
    env.app.onboarding.add_identity("example.com", "demo")
    env.app.lifecycle.tick()
    (key,) = env.store.list_keys()
    assert key.state is State.ACTIVE
    env.clock.advance(30)
    s = scrape(collector(env))
    assert value(s, "rotator_store_read_ok") == 1
    assert value(s, "rotator_keys", state="active", policy="demo") == 1
    assert value(s, "rotator_keys", state="draining", policy="demo") == 0  # zero, not absent
    assert value(s, "rotator_keys_destroyed") == 0
    assert value(s, "rotator_oldest_active_key_age_seconds", policy="demo") == 30
    ident = env.store.identity("example.com")
    assert ident is not None and ident.rotation_due_at is not None
    due = ident.rotation_due_at.timestamp()
    assert value(s, "rotator_next_rotation_timestamp_seconds") == due
    assert value(s, "rotator_identities", mode="third-party", role="customer") == 1
    assert (
        value(s, "rotator_identities_without_active_key", mode="third-party", role="customer") == 0
    )
    assert value(s, "rotator_keys_failing", action="verify") == 0
    assert value(s, "rotator_drift_findings") == 0
    assert not any(dict(labels).get("domain") for _, labels in s)

    # a full rotation later: the old key drains, then is destroyed
    env.clock.advance(31)
    env.app.lifecycle.tick()
    s = scrape(collector(env))
    assert value(s, "rotator_keys", state="active", policy="demo") == 1
    assert value(s, "rotator_keys", state="draining", policy="demo") == 1
    assert value(s, "rotator_oldest_active_key_age_seconds", policy="demo") == 0
    env.clock.advance(40)
    env.app.lifecycle.tick()
    s = scrape(collector(env))
    assert value(s, "rotator_keys_destroyed") == 1
    assert ("rotator_keys", frozenset({("state", "destroyed"), ("policy", "demo")})) not in s


def test_identities_awaiting_customer_dns_and_failing_keys(make_env: MakeEnv) -> None:
    env = make_env(esp_nameservers=ESP_NS)
    zone = "myesp._domainkey.acme.example"
    env.app.onboarding.add_customers(
        [CustomerRow("Acme", "acme.example", "ns-delegation", "demo")], "op"
    )
    env.app.lifecycle.tick()  # published, but the customer has not delegated yet
    s = scrape(collector(env))
    labels = {"mode": "ns-delegation", "role": "customer"}
    assert value(s, "rotator_identities_awaiting_customer_dns", **labels) == 1
    assert value(s, "rotator_identities_without_active_key", **labels) == 1
    assert value(s, "rotator_keys_failing", action="verify") == 1
    assert value(s, "rotator_keys", state="published", policy="demo") == 1
    assert value(s, "rotator_next_action_timestamp_seconds") > 0

    env.dns.delegations[zone] = set(ESP_NS)
    env.clock.advance(1)
    env.app.lifecycle.tick()
    s = scrape(collector(env))
    assert value(s, "rotator_identities_awaiting_customer_dns", **labels) == 0
    assert value(s, "rotator_identities_without_active_key", **labels) == 0
    assert value(s, "rotator_keys_failing", action="verify") == 0


def test_drift_findings_and_broken_customer_dns(env: UnitEnv) -> None:
    env.app.onboarding.add_identity("example.com", "demo")
    env.app.onboarding.add_identity("example.org", "demo")
    env.app.lifecycle.tick()
    drift: tuple[str, frozenset[tuple[str, str]]] = ("rotator_drift_findings", frozenset())
    broken = {"mode": "third-party", "role": "customer"}
    s = scrape(collector(env))
    assert s[drift] == 0
    assert value(s, "rotator_identities_customer_dns_broken", **broken) == 0
    # the watch's findings, as it records them
    key = env.key_of("example.com")
    found = ev.DriftDetected(
        at=env.clock.now(),
        key_id=key.key_id,
        identity=key.identity,
        domain=key.domain,
        selector=key.selector,
        server="127.0.0.2:53",
        answered="NXDOMAIN",
    )
    env.store.append([found], {f"key:{key.key_id}": key.version})
    ident = env.store.identity("example.org")
    assert ident is not None
    lost = ev.CustomerDnsBroken(
        at=env.clock.now(), identity=ident.identity, domain=ident.domain, problem="CNAME gone"
    )
    env.store.append([lost], {f"identity:{ident.identity}": ident.version})
    s = scrape(collector(env))
    assert s[drift] == 1
    assert value(s, "rotator_identities_customer_dns_broken", **broken) == 1
    # and a last error coded drift counts as an open finding too: here one recorded
    # before events carried codes ("drift: ..." is what such a log's message says)
    other = env.key_of("example.org")
    legacy = ev.ActionFailed(
        at=env.clock.now(),
        key_id=other.key_id,
        identity=other.identity,
        domain=other.domain,
        selector=other.selector,
        action="publish",
        error="drift: ns2 serves another record",
        attempt=1,
        retry_at=env.clock.now(),
    )
    env.store.append([legacy], {f"key:{other.key_id}": other.version})
    assert scrape(collector(env))[drift] == 2


def test_an_unreadable_store_still_serves_the_rest(env: UnitEnv) -> None:
    c = collector(env)
    env.store.close()
    s = scrape(c)
    assert value(s, "rotator_store_read_ok") == 0
    assert not any(name == "rotator_keys" for name, _ in s)


def test_series_stay_bounded_at_1000_identities(env: UnitEnv) -> None:
    n = 1000
    rows = [
        CustomerRow(
            f"C{i}",
            f"d{i}.example",
            "third-party",
            "demo",
            f"d{i}.esp-dkim.test",
            zone="esp-dkim.test",
        )
        for i in range(n)
    ]
    env.app.onboarding.add_customers(rows, "op")
    env.app.lifecycle.tick()
    assert len(env.store.list_keys(state=State.ACTIVE)) == n

    s = scrape(collector(env))
    assert value(s, "rotator_keys", state="active", policy="demo") == n
    assert value(s, "rotator_identities", mode="third-party", role="customer") == n
    assert len(s) < 60, sorted(s)  # a handful per state, action and mode
    assert not any("domain" in dict(labels) for _, labels in s)

    # per_identity: exactly one series per identity in each per-identity family
    s = scrape(collector(env, per_identity=True))
    for family in (
        "rotator_identity_active_key_age_seconds",
        "rotator_identity_next_rotation_timestamp_seconds",
    ):
        domains = [dict(lb)["domain"] for name, lb in s if name == family]
        assert sorted(domains) == sorted(f"d{i}.esp-dkim.test" for i in range(n))
    assert len(s) < 60 + 2 * n


# --- tick counters from the log ----------------------------------------------------------------


def refusing_ns2(env: UnitEnv) -> None:
    """ns2 answers REFUSED: a failure at once (not a lagging secondary)."""
    observe = env.dns.observe

    def refused(zone: str, name: str, deadline: float | None = None) -> list[Observation]:
        out = observe(zone, name, deadline)
        return [
            o if o.nameserver == "ns1" else Observation("ns2", o.address, "REFUSED") for o in out
        ]

    env.dns.observe = refused  # type: ignore[method-assign]


def test_failures_are_counted_by_cause_nameserver_and_target(env: UnitEnv) -> None:
    registry = CollectorRegistry()
    ticks = TickMetrics(registry)
    env.app.onboarding.add_identity("old.example", "demo")
    env.dns.fail_publish = "REFUSED before the daemon started"
    env.app.lifecycle.tick()
    env.dns.fail_publish = None
    history = [e for e in env.store.events() if isinstance(e.event, ev.ActionFailed)]
    assert len(history) == 1
    ticks.start_counting(env.store)  # the log's history is not counted
    ticks.scan(env.store)
    counted = parse(generate_latest(registry).decode())
    assert not [name for name, _ in counted if name == "rotator_action_failures_total"]

    env.app.onboarding.add_identity("example.com", "demo")
    refusing_ns2(env)
    report = env.app.lifecycle.tick()
    ticks.tick_done(report, 0.2)
    ticks.scan(env.store)
    s = parse(generate_latest(registry).decode())
    assert value(s, "rotator_action_failures_total", action="verify", cause="nameservers") == 1
    failed_ns = {"action": "verify", "nameserver": "ns2", "address": "127.0.0.2:53"}
    assert value(s, "rotator_nameserver_failures_total", **failed_ns) == 1
    assert value(s, "rotator_keys_generated_total") == 1
    assert value(s, "rotator_steps_total", action="publish") == 1
    assert value(s, "rotator_tick_duration_seconds_count") == 1
    assert value(s, "rotator_last_successful_tick_timestamp_seconds") > 0

    del env.dns.observe  # both servers answer again; now the signer fails
    env.signer.fail = "reload: exit status 1"
    env.clock.advance(2)
    env.app.lifecycle.tick()
    env.dns.fail_publish = "REFUSED by the primary"
    env.app.onboarding.add_identity("third.example", "demo")
    env.app.lifecycle.tick()
    ticks.scan(env.store)
    ticks.scan(env.store)  # nothing new: nothing counted twice
    ticks.tick_failed("crash")
    s = parse(generate_latest(registry).decode())
    assert value(s, "rotator_action_failures_total", action="activate", cause="signer") >= 1
    assert value(s, "rotator_signer_target_failures_total", target="fake") >= 1
    assert value(s, "rotator_action_failures_total", action="publish", cause="dns-update") == 1
    assert value(s, "rotator_tick_failures_total", kind="crash") == 1
    assert value(s, "rotator_tick_failures_total", kind="error") == 0
    total = sum(v for (name, _), v in s.items() if name == "rotator_action_failures_total")
    failures = [e for e in env.store.events() if isinstance(e.event, ev.ActionFailed)]
    assert total == len(failures) - len(history)  # each one since start_counting, once


def test_label_values_learnt_from_events_are_capped(env: UnitEnv) -> None:
    registry = CollectorRegistry()
    ticks = TickMetrics(registry)
    now = datetime(2026, 11, 24, tzinfo=UTC)
    for i in range(LABEL_VALUES_MAX + 50):
        ticks.count(
            ev.ActionFailed(
                at=now,
                key_id="k",
                identity="x.example",
                domain="x.example",
                selector="s",
                action="verify",
                error="1/1 nameserver addresses disagree",
                attempt=1,
                retry_at=now,
                details=(
                    {
                        "nameserver": f"ns{i}.customer{i}.example",
                        "address": f"192.0.2.{i}:53",
                        "ok": False,
                        "detail": "REFUSED",
                    },
                ),
            )
        )
    s = parse(generate_latest(registry).decode())
    series = [lb for name, lb in s if name == "rotator_nameserver_failures_total"]
    assert len(series) == LABEL_VALUES_MAX + 1
    other = {"action": "verify", "nameserver": "other", "address": "other"}
    assert value(s, "rotator_nameserver_failures_total", **other) == 50


# --- readiness and HTTP ------------------------------------------------------------------------


class Ticking:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_readiness_follows_startup_and_ticks() -> None:
    clock = Ticking()
    health = Health(tick_seconds=30, clock=clock)
    assert health.window == 90
    assert health.readiness() == (False, "starting: start-up convergence is not done yet")
    health.startup_done()
    assert health.readiness()[1].startswith("started: waiting for the first tick")
    health.tick_finished()
    assert health.readiness()[0]
    clock.t += 89
    assert health.readiness()[0]
    clock.t += 2
    ready, why = health.readiness()
    assert not ready and why.startswith("no tick finished for 91s")
    health.tick_finished("database is locked\nsecond line")
    assert health.readiness() == (False, "the last tick failed: database is locked")
    health.tick_finished()
    assert health.readiness()[0]
    assert Health(tick_seconds=0.5).window == 60  # a floor for short test intervals


def test_a_standby_is_ready_and_a_node_that_takes_over_is_not_until_it_ticked() -> None:
    health = Health(tick_seconds=30, clock=Ticking())
    health.standby()
    assert health.readiness() == (
        True,
        "standby: another node leads; this one takes over if it stops",
    )
    health.converging()  # took the lease: start-up convergence first
    assert health.readiness() == (False, "starting: start-up convergence is not done yet")
    health.startup_done()
    health.tick_finished()
    assert health.readiness()[0]
    health.standby()  # stepped down: no ticks to wait for
    assert health.readiness()[0]


class Keeper:
    node = "mx1"

    def __init__(self, lease: Lease | None, seen: Leader | None) -> None:
        self.lease, self.seen = lease, seen


def samples(keeper: Keeper) -> dict[str, tuple[dict[str, str], float]]:
    registry = CollectorRegistry()
    registry.register(LeaderCollector(keeper))
    return {s.name: (s.labels, s.value) for family in registry.collect() for s in family.samples}


def test_which_node_leads_and_since_when() -> None:
    since = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    mine = Lease("mx1", 7, since, since)
    assert samples(Keeper(mine, mine)) == {
        "rotator_leader": ({"node": "mx1"}, 1),
        "rotator_leader_epoch": ({"leader": "mx1"}, 7),
        "rotator_leader_since_timestamp_seconds": ({"leader": "mx1"}, since.timestamp()),
    }
    theirs = Leader("mx2", 8, since, since)  # a standby says whom it saw leading
    assert samples(Keeper(None, theirs)) == {
        "rotator_leader": ({"node": "mx1"}, 0),
        "rotator_leader_epoch": ({"leader": "mx2"}, 8),
        "rotator_leader_since_timestamp_seconds": ({"leader": "mx2"}, since.timestamp()),
    }
    assert samples(Keeper(None, None)) == {"rotator_leader": ({"node": "mx1"}, 0)}


def get(url: str, method: str = "GET") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def served(env: UnitEnv) -> Iterator[tuple[str, Health]]:
    registry = CollectorRegistry()
    health = Health(tick_seconds=1)
    registry.register(StoreCollector(env.store, env.clock.now, health=health))
    TickMetrics(registry)
    server = MetricsServer("127.0.0.1", 0, wsgi_app(registry, health))
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}", health
    finally:
        server.stop()


def test_endpoints_over_http(env: UnitEnv, served: tuple[str, Health]) -> None:
    base, health = served
    env.app.onboarding.add_identity("example.com", "demo")
    env.app.lifecycle.tick()
    assert get(base + "/healthz") == (200, "ok: the daemon is up\n")
    status, body = get(base + "/readyz")
    assert (status, body) == (503, "starting: start-up convergence is not done yet\n")
    health.startup_done()
    health.tick_finished()
    assert get(base + "/readyz")[0] == 200
    status, text = get(base + "/metrics")
    assert status == 200
    s = parse(text)
    assert value(s, "rotator_keys", state="active", policy="demo") == 1
    assert value(s, "rotator_ready") == 1
    assert value(s, "rotator_tick_failures_total", kind="error") == 0
    assert get(base + "/nothing")[0] == 404
    assert get(base + "/readyz", method="POST")[0] == 405


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_held_connections_are_capped_and_cut_off(env: UnitEnv) -> None:
    # half-sent requests that are never finished: a few slots for a short while, then the
    # endpoint answers again; the daemon's threads and file descriptors are never used up
    server = MetricsServer(
        "127.0.0.1", 0, wsgi_app(CollectorRegistry(), Health(1)), max_connections=4, deadline=1.0
    )
    server.start()
    held: list[socket.socket] = []
    try:
        base_fds, base_threads = open_fds(), threading.active_count()
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and never the end
            held.append(s)
        time.sleep(0.3)
        # ours (200 client sockets) plus at most the cap's server-side sockets
        assert open_fds() - base_fds <= 200 + 4 + 2
        assert threading.active_count() - base_threads <= 2 * 4  # handler + deadline timer
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and get_or_none(server.port) is None:
            time.sleep(0.2)
        assert get_or_none(server.port) == 200
        for s in held[:4]:  # the first four were served, then cut off at the deadline
            s.settimeout(5)
            assert s.recv(100) == b""
    finally:
        for s in held:
            s.close()
        server.stop()


def get_or_none(port: int) -> int | None:
    try:
        return get(f"http://127.0.0.1:{port}/healthz")[0]
    except OSError:
        return None


def test_a_port_in_use_is_a_one_line_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = MetricsServer("127.0.0.1", port, wsgi_app(CollectorRegistry(), Health(1)))
        with pytest.raises(ConfigError, match=f"metrics.listen 127.0.0.1:{port}: cannot listen"):
            server.start()
        server.stop()  # nothing to stop: no error


def test_a_tick_report_counts_steps_by_action() -> None:
    registry = CollectorRegistry()
    ticks = TickMetrics(registry)
    report = TickReport(generated=2, succeeded=3)
    report.by_action.update({"publish": 2, "activate": 1})
    ticks.tick_done(report, 1.5)
    s = parse(generate_latest(registry).decode())
    assert value(s, "rotator_steps_total", action="publish") == 2
    assert value(s, "rotator_steps_total", action="verify") == 0  # present from the start
    assert value(s, "rotator_keys_generated_total") == 2
    assert value(s, "rotator_tick_duration_seconds_bucket", le="2.5") == 1


def test_the_deploy_example_parses_once_uncommented() -> None:
    text = (Path(__file__).resolve().parents[2] / "deploy" / "rotator.toml").read_text()
    lines = [
        line[2:]
        for line in text.splitlines()
        if re.match(r"# (\[metrics\]|listen|allow_remote|per_identity) ", line + " ")
    ]
    assert lines[0] == "[metrics]"
    m = parse_metrics(tomllib.loads("\n".join(lines))["metrics"], Path("rotator.toml"))
    assert (m.host, m.port, m.per_identity) == ("127.0.0.1", 9469, False)
