"""The daemon process with [metrics] on a loopback port, beside real BIND: /healthz, /readyz
and /metrics scraped over HTTP, the exposition parsed with prometheus_client's parser."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import DOMAIN
from .rotatorenv import RotatorEnv

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    """(status, body); status 0 while nothing listens yet."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def scrape(base: str) -> Samples:
    status, text = get(base + "/metrics")
    assert status == 200, (status, text)
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def listen_on(env: RotatorEnv, listen: str) -> None:
    env.config.write_text(env.config.read_text() + f'\n[metrics]\nlisten = "{listen}"\n')


@pytest.mark.timeout(180)
def test_the_running_daemon_serves_metrics_and_health(env: RotatorEnv) -> None:
    port = free_port()
    listen_on(env, f"127.0.0.1:{port}")
    base = f"http://127.0.0.1:{port}"
    env.cli("domain", "add", DOMAIN, "--policy", "demo")
    env.start()
    env.wait_for("/healthz", lambda: get(base + "/healthz")[0] == 200, 30)
    env.wait_for("first key active", lambda: env.key_in_state(DOMAIN, "active"), 60)
    env.wait_for("/readyz 200", lambda: get(base + "/readyz")[0] == 200, 30)
    assert get(base + "/readyz")[1].startswith("ready: the last tick finished")

    active = ("rotator_keys", frozenset({("state", "active"), ("policy", "demo")}))
    s = env.wait_for(
        "the active key in /metrics", lambda: scrape(base).get(active) == 1 and scrape(base), 30
    )
    now = time.time()
    assert value(s, "rotator_store_read_ok") == 1
    assert value(s, "rotator_ready") == 1
    assert sum(v for (name, _), v in s.items() if name == "rotator_identities") == 1
    unsigned = [v for (n, _), v in s.items() if n == "rotator_identities_without_active_key"]
    assert sum(unsigned) == 0
    assert now - 30 < value(s, "rotator_last_successful_tick_timestamp_seconds") <= now + 1
    assert value(s, "rotator_tick_duration_seconds_count") >= 1
    assert value(s, "rotator_keys_generated_total") >= 1
    assert value(s, "rotator_steps_total", action="activate") >= 1
    assert value(s, "rotator_tick_failures_total", kind="crash") == 0
    assert 0 <= value(s, "rotator_oldest_active_key_age_seconds", policy="demo") < 60
    # the demo policy rotates every 20 s
    assert now - 5 < value(s, "rotator_next_rotation_timestamp_seconds") < now + 25
    assert value(s, "rotator_drift_findings") == 0
    assert not any("domain" in dict(labels) for _, labels in s)  # per_identity is off

    assert env.stop() == 0
    with pytest.raises(OSError):  # the port is closed with the daemon
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


@pytest.mark.timeout(60)
def test_a_busy_port_stops_the_daemon_with_one_line(env: RotatorEnv) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        listen_on(env, f"127.0.0.1:{port}")
        proc = env.cli("run", check=False, timeout=30)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error: ")]
    assert len(lines) == 1 and f"metrics.listen 127.0.0.1:{port}: cannot listen" in lines[0]
    # the one-daemon lock was let go: a daemon on a free port starts
    env.config.write_text(env.config.read_text().replace(str(port), str(free_port())))
    assert env.cli("run", "--duration", "1", check=False, timeout=30).returncode == 0


@pytest.mark.timeout(60)
def test_a_remote_address_is_refused_unless_allowed(env: RotatorEnv) -> None:
    listen_on(env, "0.0.0.0:9469")
    proc = env.cli("run", check=False, timeout=30)
    assert proc.returncode != 0
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "not a loopback address" in line and "metrics.allow_remote = true" in line
