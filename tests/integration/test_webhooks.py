"""Webhooks from the real daemon over real HTTP: a receiver on loopback checks every
signature with the Standard Webhooks library; deliveries are retried, arrive in log
order, resume from the cursor after a SIGKILL (a redelivery carries the same webhook-id),
and a receiver that never answers is parked without delaying any activation; deliveries
are counted in /metrics by subscription id, and a parked receiver is in `rotator status`
and on the status page."""

from __future__ import annotations

import json
import re
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from rotator.demo.localdns import BindPair
from tests.support.http import Client

from .conftest import POLICIES
from .rotatorenv import RotatorEnv
from .test_metrics import Samples, free_port, get, scrape, value

pytestmark = pytest.mark.integration

DOMAINS = tuple(f"d{i}.example.test" for i in range(5))


class Receiver:
    """An HTTP endpoint on 127.0.0.1: verifies each POST, fails the first `failures`,
    answers after `delay` seconds; keeps (webhook-id, body, acknowledged) in order."""

    def __init__(self) -> None:
        self.secret = ""
        self.failures = 0
        self.delay = 0.0
        self.got: list[tuple[str, dict[str, object], bool]] = []
        self.bad: list[str] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers["content-length"]))
                headers = {k: v for k, v in self.headers.items()}
                try:
                    payload = Webhook(receiver.secret).verify(data, headers)
                except Exception as exc:
                    receiver.bad.append(str(exc))
                    payload = None
                time.sleep(receiver.delay)
                with receiver.lock:
                    ack = payload is not None and receiver.failures == 0
                    receiver.failures = max(0, receiver.failures - 1)
                    receiver.got.append((headers["webhook-id"], payload or {}, ack))
                self.send_response(204 if ack else 503)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/rotator"

    def acked(self) -> list[tuple[str, dict[str, object]]]:
        with self.lock:
            return [(i, p) for i, p, ack in self.got if ack]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A port that takes connections (the kernel's backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/never"
    finally:
        sock.close()


@pytest.fixture
def env(tmp_path: Path, bind_factory: Callable[..., BindPair]) -> Iterator[RotatorEnv]:
    renv = RotatorEnv(tmp_path, bind_factory(tmp_path / "bind", zones=DOMAINS), POLICIES)
    with renv.config.open("a") as f:
        f.write("\n[webhooks]\nretry_seconds = [0.5, 0.5, 0.5]\ntimeout = 3\npoll_seconds = 0.2\n")
    try:
        yield renv
    finally:
        renv.close()


def subscribe(env: RotatorEnv, url: str, *events: str) -> tuple[str, str]:
    args = [a for e in events for a in ("--event", e)]
    out = env.cli("webhook", "add", url, *args).stdout
    found = re.search(r"^webhook (whk_\w+) -> .*\nsecret: (whsec_\S+)$", out, re.M)
    assert found is not None, out
    return found[1], found[2]


def activations(env: RotatorEnv) -> list[int]:
    conn = sqlite3.connect(env.workdir / "rotator.db")
    try:
        rows = conn.execute("SELECT position FROM events WHERE type = 'KeyActivated'")
        return [int(r[0]) for r in rows]
    finally:
        conn.close()


@pytest.mark.timeout(240)
def test_webhooks_signed_retried_ordered_and_resumed_after_sigkill(
    env: RotatorEnv, receiver: Receiver, black_hole: str
) -> None:
    sub, receiver.secret = subscribe(env, receiver.url, "identity.active")
    dead, _ = subscribe(env, black_hole, "identity.active")
    receiver.failures = 2  # the first delivery is refused twice, then acknowledged
    env.cli("domain", "add", DOMAINS[0], "--policy", "demo")
    started = time.monotonic()
    env.start()
    env.wait_for("first key active", lambda: env.key_in_state(DOMAINS[0], "active"), 60)
    took = time.monotonic() - started
    env.wait_for("identity.active delivered", receiver.acked, 30)
    (first_id, first), *_ = receiver.acked()
    tries = [i for i, _, _ in receiver.got]
    assert tries == [first_id] * 3, "retried with the same webhook-id"
    assert first["type"] == "identity.active"
    data = first["data"]
    assert isinstance(data, dict) and data["domain"] == DOMAINS[0] and data["first"] is True
    assert first_id == f"msg_{sub}_{first['position']}"

    # the rest, answered slowly: the daemon is SIGKILLed mid-stream and restarted
    receiver.delay = 0.7
    for name in DOMAINS[1:]:
        env.cli("domain", "add", name, "--policy", "demo")
    env.wait_for("two more delivered", lambda: len(receiver.acked()) >= 3, 90)
    env.stop(signal.SIGKILL)
    env.start()
    env.wait_for("all delivered", lambda: len({i for i, _ in receiver.acked()}) == 5, 90)
    env.wait_for("every key active", lambda: len(activations(env)) == 5, 60)
    assert receiver.bad == [], "every signature verifies"
    acked = receiver.acked()
    positions = [int(str(p["position"])) for _, p in acked]
    assert sorted(set(positions)) == activations(env), "nothing lost"
    first_seen = list(dict.fromkeys(positions))
    assert first_seen == sorted(first_seen), "in log order"
    for msg_id, payload in acked:  # a redelivery is the same message
        assert msg_id == f"msg_{sub}_{payload['position']}"

    # the dead receiver never held up an activation, and is parked with its reason
    assert took < 45, f"first activation took {took:.0f}s"

    def listed() -> list[dict[str, object]]:
        out = env.cli("webhook", "list", "--json").stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    parked = env.wait_for(
        "the dead receiver parked",
        lambda: [w for w in listed() if w["id"] == dead and w["parked"]],
        60,
    )
    assert "timed out" in str(parked[0]["parked"])
    env.cli("webhook", "resume", dead)
    assert next(w for w in listed() if w["id"] == dead)["parked"] is None
    env.stop()


@pytest.mark.timeout(180)
def test_deliveries_are_counted_and_a_parked_receiver_is_shown(
    env: RotatorEnv, receiver: Receiver, black_hole: str
) -> None:
    metrics_port, api_port = free_port(), free_port()
    with env.config.open("a") as f:
        f.write(f'\n[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n')
        f.write(f'\n[api]\nlisten = "127.0.0.1:{api_port}"\n')
    token = env.cli("token", "create", "ops", "--scope", "read").stdout.strip()
    sub, receiver.secret = subscribe(env, receiver.url, "identity.active")
    dead, _ = subscribe(env, black_hole, "identity.active")
    receiver.failures = 1
    env.cli("domain", "add", DOMAINS[0], "--policy", "demo")
    env.start()
    base = f"http://127.0.0.1:{metrics_port}"

    def parked() -> Samples | None:
        status, _ = get(base + "/metrics")
        s = scrape(base) if status == 200 else {}
        return s if s.get(("rotator_webhooks_parked", frozenset())) == 1 else None

    s = env.wait_for("the dead receiver parked, in the metrics", parked, 90)
    counts = {
        who: [value(s, f"rotator_webhook_deliveries_{w}_total", subscription=who)
              for w in ("attempted", "succeeded", "failed")]
        for who in (sub, dead)
    }  # fmt: skip
    assert counts == {sub: [2, 1, 1], dead: [4, 0, 4]}  # the dead one: 1 try, 3 retries
    lag = "rotator_webhook_lag_events"
    assert value(s, lag, subscription=dead) > 0
    env.wait_for("the live one caught up", lambda: value(scrape(base), lag, subscription=sub) == 0)
    text = get(base + "/metrics")[1]
    assert black_hole not in text and receiver.url not in text and receiver.secret not in text

    out = env.cli("status", "--json").stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    (row,) = [r for r in rows if r.get("webhook")]
    assert row["webhook"] == dead and row["state"] == "webhook parked" and row["since"]
    assert "timed out" in row["last_error"]
    page = Client(f"http://127.0.0.1:{api_port}").get(
        "/", headers={"authorization": f"Bearer {token}"}
    )
    assert page.status_code == 200 and "webhook parked" in page.text and dead in page.text
    assert black_hole not in page.text
    env.cli("webhook", "resume", dead)
    out = env.cli("status", "--json").stdout
    assert '"webhook"' not in out
    assert env.stop() == 0
