"""Webhooks: subscriptions folded from the log, the payload of each public type, the
signature (checked with the Standard Webhooks library), the cursor file, and a courier's
retries, parking and resume; a loopback receiver plays the customer's endpoint."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks.webhooks import Webhook

from rotator.adapters.webhooks.sender import HttpSender
from rotator.adapters.webhooks.vault import FileVault
from rotator.app.webhook_delivery import Courier, DeliverySettings
from rotator.app.webhooks import Webhooks, body, message_id, public_type
from rotator.bootstrap import build
from rotator.config.settings import load_config
from rotator.domain import events as ev
from rotator.domain.errors import ExternalError, InputError
from rotator.metrics.daemon import StoreCollector
from rotator.metrics.webhooks import WebhookCollector
from rotator.ports import DeliveryError, LogFilter
from rotator.timeutil import iso

from .clirun import db_path, ok, refused
from .conftest import UnitEnv


@pytest.fixture
def hooks(env: UnitEnv) -> Webhooks:
    env.ctx.webhook_vault = FileVault(env.tmp / "rotator.db")
    return Webhooks(env.ctx, env.ctx.webhook_vault)


class FakeSender:
    """Fails the first `failures` posts, then acknowledges; keeps what it got."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.got: list[tuple[str, dict[str, object]]] = []

    def send(self, url: str, secret: str, msg_id: str, body: bytes, timeout: float) -> int:
        if self.failures:
            self.failures -= 1
            raise DeliveryError("127.0.0.1: HTTP 503 Service Unavailable")
        self.got.append((msg_id, json.loads(body)))
        return 200


def courier(env: UnitEnv, hooks: Webhooks, sender: FakeSender, waits: list[float]) -> Courier:
    (sub,) = hooks.list()
    assert hooks.vault is not None
    c = Courier(
        sub, env.store, sender, hooks.vault, DeliverySettings(retry=(1.0, 2.0)),
        env.ctx.recorder.append, env.clock, lambda s: waits.append(s) or False,  # type: ignore[func-returns-value]
    )  # fmt: skip
    c.update(sub, hooks.book.seen)
    return c


def test_identity_active_payload_and_types(env: UnitEnv, hooks: Webhooks) -> None:
    sub, secret = hooks.add("http://127.0.0.1:9/hook", ["identity.active"], "alice", "crm")
    assert secret.startswith("whsec_") and len(secret) > 40
    env.app.onboarding.add_identity("a.example", "demo")
    env.app.lifecycle.tick()
    (stored,) = env.store.events(LogFilter(types=("KeyActivated",)))
    assert public_type(stored.event) == "identity.active"
    sent = json.loads(body(stored, "identity.active"))
    assert sent["type"] == "identity.active" and sent["position"] == stored.position
    data = sent["data"]
    assert (data["event"], data["domain"], data["first"]) == ("KeyActivated", "a.example", True)
    assert data["selector"] and data["key_id"] and "targets" not in data
    assert message_id(sub.id, 7) == f"msg_{sub.id}_7"
    # the secret is in its 0600 file, never in the log
    secret_file = env.tmp / "rotator.db.webhooks" / f"{sub.id}.secret"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert all(secret not in json.dumps(s.event.payload()) for s in env.store.events())


def test_subscriptions_are_checked_and_folded(env: UnitEnv, hooks: Webhooks) -> None:
    with pytest.raises(InputError, match="http"):
        hooks.add("ftp://x.example/", [], "a", "")
    with pytest.raises(InputError, match="unknown event type"):
        hooks.add("https://x.example/", ["key.exploded"], "a", "")
    sub, _ = hooks.add("https://x.example/", [], "a", "")
    assert "identity.active" in sub.types and "safety.stopped" in sub.types
    with pytest.raises(InputError, match="not parked"):
        hooks.resume(sub.id, "a", "")
    hooks.remove(sub.id, "a", "offboarded")
    assert hooks.list() == []
    assert not (env.tmp / "rotator.db.webhooks" / f"{sub.id}.secret").exists()


def test_delivered_in_order_and_the_cursor_survives(env: UnitEnv, hooks: Webhooks) -> None:
    hooks.add("http://127.0.0.1:9/hook", ["identity.active"], "a", "")
    for name in ("a.example", "b.example", "c.example"):
        env.app.onboarding.add_identity(name, "demo")
    env.app.lifecycle.tick()
    sender = FakeSender()
    c = courier(env, hooks, sender, [])
    assert c.step() is False
    positions = [data["position"] for _, data in sender.got]
    logged = [s.position for s in env.store.events(LogFilter(types=("KeyActivated",)))]
    assert positions == logged and len(logged) == 3  # log order
    (sub,) = hooks.list()
    assert hooks.cursor(sub) == positions[-1]
    # a new courier (a restarted daemon) starts after the cursor: nothing twice
    again = FakeSender()
    courier(env, hooks, again, []).step()
    assert again.got == []


def test_retried_on_the_schedule_then_parked_then_resumed(env: UnitEnv, hooks: Webhooks) -> None:
    hooks.add("http://127.0.0.1:9/hook", ["identity.active"], "a", "")
    env.app.onboarding.add_identity("a.example", "demo")
    env.app.lifecycle.tick()
    waits: list[float] = []
    sender = FakeSender(failures=3)
    c = courier(env, hooks, sender, waits)
    c.step()
    assert waits == [1.0, 2.0] and sender.got == []  # 3 attempts, then parked
    (parked,) = [s.event for s in env.store.events(LogFilter(types=("WebhookParked",)))]
    assert isinstance(parked, ev.WebhookParked) and "HTTP 503" in parked.error
    (sub,) = hooks.list()
    assert sub.parked is not None and "503" in sub.parked
    assert c.parked  # parked at once, before any fold saw the event
    hooks.resume(sub.id, "alice", "receiver fixed")
    (sub,) = hooks.list()
    c.update(sub, hooks.book.seen)
    assert not c.parked
    c.step()
    ((msg_id, data),) = sender.got
    assert (
        msg_id
        == message_id(sub.id, parked.position)
        == message_id(sub.id, int(str(data["position"])))
    )


@pytest.mark.parametrize("damage", ["missing", "unreadable", "empty", "garbled"])
def test_a_secret_that_cannot_be_read_parks_at_once_and_resumes(
    env: UnitEnv, hooks: Webhooks, damage: str
) -> None:
    sub, secret = hooks.add("http://127.0.0.1:9/hook", ["identity.active"], "a", "")
    env.app.onboarding.add_identity("a.example", "demo")
    env.app.lifecycle.tick()
    path = env.tmp / "rotator.db.webhooks" / f"{sub.id}.secret"
    if damage == "missing":
        path.unlink()
    elif damage == "unreadable":
        path.unlink()
        path.mkdir()  # read as a file: EISDIR, as root would get for a 0000 file too
    else:
        path.write_text("" if damage == "empty" else "whsec_not base64!\n")
    waits: list[float] = []
    sender = FakeSender()
    c = courier(env, hooks, sender, waits)
    assert c.step() is False
    assert sender.got == [] and waits == []  # no POST, no retry schedule: parked at once
    assert c.parked
    (parked,) = [s.event for s in env.store.events(LogFilter(types=("WebhookParked",)))]
    assert isinstance(parked, ev.WebhookParked) and parked.attempts == 0
    assert str(path) in parked.error and f"rotator webhook resume {sub.id}" in parked.error
    (listed,) = hooks.list()
    assert listed.parked == parked.error and listed.parked_since == env.clock.now()
    if path.is_dir():
        path.rmdir()
    path.write_text(secret + "\n")  # restored from a backup
    hooks.resume(sub.id, "alice", "secret restored")
    (listed,) = hooks.list()
    c.update(listed, hooks.book.seen)
    c.step()
    ((msg_id, data),) = sender.got
    assert msg_id == message_id(sub.id, parked.position) and data["position"] == parked.position


class DeadEnds(FakeSender):
    """Never acknowledges a URL with /dead in it."""

    def send(self, url: str, secret: str, msg_id: str, body: bytes, timeout: float) -> int:
        if "/dead" in url:
            raise DeliveryError("127.0.0.1: timed out")
        return super().send(url, secret, msg_id, body, timeout)


def test_delivery_metrics_by_subscription_never_its_url_or_secret(
    env: UnitEnv, hooks: Webhooks
) -> None:
    good, good_secret = hooks.add("http://127.0.0.1:9/ok?token=hush", ["identity.active"], "a", "")
    dead, _ = hooks.add("http://127.0.0.1:9/dead", ["identity.active"], "a", "")
    for name in ("a.example", "b.example"):
        env.app.onboarding.add_identity(name, "demo")
    env.app.lifecycle.tick()
    sender = DeadEnds(failures=1)  # the first POST to the good receiver fails once
    assert hooks.vault is not None
    couriers = []
    for sub in hooks.list():
        c = Courier(sub, env.store, sender, hooks.vault, DeliverySettings(retry=(1.0, 2.0)),
                    env.ctx.recorder.append, env.clock, lambda s: False)  # fmt: skip
        c.update(sub, hooks.book.seen)
        c.step()
        couriers.append(c)
    assert couriers[0].sub.id == good.id
    couriers[0].step()  # its next poll: past the WebhookParked appended after its first
    metrics = StoreCollector(env.store, env.clock.now)
    webhooks = WebhookCollector(lambda: [c.stats() for c in couriers], metrics.head)
    registry = CollectorRegistry()
    registry.register(webhooks)
    text = generate_latest(registry).decode()
    assert "hush" not in text and "/ok" not in text and good_secret not in text
    got = {
        (s.name, s.labels.get("subscription", "")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    head = env.store.head()
    assert head is not None
    assert [got[(f"rotator_webhook_deliveries_{w}_total", good.id)] for w in
            ("attempted", "succeeded", "failed")] == [3, 2, 1]  # fmt: skip
    assert [got[(f"rotator_webhook_deliveries_{w}_total", dead.id)] for w in
            ("attempted", "succeeded", "failed")] == [3, 0, 3]  # fmt: skip
    assert got[("rotator_webhooks_parked", "")] == 1
    assert got[("rotator_webhook_lag_events", good.id)] == 0  # caught up with the log
    (parked,) = env.store.events(LogFilter(types=("WebhookParked",)))
    # the dead one reached the position it was added at: everything since is behind
    assert got[("rotator_webhook_lag_events", dead.id)] == head[0] - dead.since
    assert parked.position == head[0]
    env.app.onboarding.add_identity("c.example", "demo")  # events not delivered yet
    lag = {
        sample.labels["subscription"]: sample.value
        for family in webhooks.collect()
        if family.name == "rotator_webhook_lag_events"
        for sample in family.samples
    }
    grown = env.store.head()
    assert grown is not None and lag[good.id] == grown[0] - head[0] > 0


def test_vault_cursor_is_atomic_and_ids_are_checked(tmp_path: Path) -> None:
    vault = FileVault(tmp_path / "r.db")
    sub = "whk_0123456789abcdef"
    vault.new_secret(sub)
    assert vault.cursor(sub) is None
    vault.save_cursor(sub, 41)
    vault.save_cursor(sub, 42)
    assert vault.cursor(sub) == 42
    assert sorted(p.name for p in vault.path.iterdir()) == [f"{sub}.cursor", f"{sub}.secret"]
    (vault.path / f"{sub}.cursor").write_text("")
    with pytest.raises(ExternalError, match="not a log position"):
        vault.cursor(sub)
    with pytest.raises(InputError):
        vault.cursor("../../etc/passwd")


class Receiver(BaseHTTPRequestHandler):
    status = 204
    delay = 0.0
    got: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers["content-length"]))
        time.sleep(self.delay)
        self.got.append(({k.lower(): v for k, v in self.headers.items()}, data))
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[Receiver]]]:
    handler = type("Handler", (Receiver,), {"got": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks?x=1", handler
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_sender_signs_as_standard_webhooks(
    receiver: tuple[str, type[Receiver]], tmp_path: Path
) -> None:
    url, handler = receiver
    secret = FileVault(tmp_path / "r.db").new_secret("whk_0123456789abcdef")
    payload = b'{"type":"identity.active"}'
    assert HttpSender().send(url, secret, "msg_1", payload, 5.0) == 204
    ((headers, data),) = handler.got
    assert data == payload and headers["webhook-id"] == "msg_1"
    assert Webhook(secret).verify(data, headers) == {"type": "identity.active"}
    handler.status = 500
    with pytest.raises(DeliveryError, match="HTTP 500"):
        HttpSender().send(url, secret, "msg_2", payload, 5.0)
    handler.status, handler.delay = 200, 2.0
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="timed out"):
        HttpSender().send(url, secret, "msg_3", payload, 0.5)
    assert time.monotonic() - started < 1.5
    with pytest.raises(DeliveryError):
        HttpSender().send("http://127.0.0.1:1/", secret, "msg_4", payload, 1.0)


def test_cli_add_list_remove(cfg: Path) -> None:
    ok(cfg, "init")
    out = ok(cfg, "webhook", "add", "https://hooks.example/rotator", "--event", "identity.active",
             "--event", "drift.detected").output  # fmt: skip
    found = re.search(r"^webhook (whk_[0-9a-f]{16}) -> ", out, re.M)
    assert found is not None and "\nsecret: whsec_" in out
    sub_id = found[1]
    listed = ok(cfg, "webhook", "list", "--json").output
    row = json.loads(listed.splitlines()[-1])
    assert row["types"] == ["drift.detected", "identity.active"] and row["parked"] is None
    assert "delivering" in ok(cfg, "webhook", "list").output
    assert "unknown" not in refused(cfg, "webhook", "add", "not a url")
    assert "not parked" in refused(cfg, "webhook", "resume", sub_id)
    ok(cfg, "webhook", "remove", sub_id)
    assert "no webhooks" in ok(cfg, "webhook", "list").output
    assert "no webhook" in refused(cfg, "webhook", "remove", sub_id)
    assert db_path(cfg).with_name("rotator.db.webhooks").stat().st_mode & 0o777 == 0o700


def park(cfg: Path, subscription: str, error: str) -> datetime:
    """Record the WebhookParked a daemon's courier records (the same recording path)."""
    app = build(load_config(cfg))
    try:
        appended = app.ctx.recorder.append(
            [ev.WebhookParked(at=app.ctx.clock.now(), subscription=subscription, position=3,
                              error=error, attempts=7)]
        )  # fmt: skip
    finally:
        app.close()
    return list(appended)[-1].event.at


def test_a_parked_webhook_shows_in_status(cfg: Path) -> None:
    ok(cfg, "init")
    out = ok(cfg, "webhook", "add", "https://hooks.example/r?token=hush").output
    found = re.search(r"^webhook (whk_[0-9a-f]{16}) -> ", out, re.M)
    assert found is not None
    sub_id = found[1]
    assert "webhook" not in ok(cfg, "status").output
    at = park(cfg, sub_id, "hooks.example: HTTP 503")
    table = ok(cfg, "status").output
    assert f"webhook {sub_id}" in table and "webhook parked" in table
    assert "HTTP 503" in table and iso(at)[:19] in table
    assert f"rotator webhook resume {sub_id}" in table and "hush" not in table
    rows = [json.loads(line) for line in ok(cfg, "status", "--json").output.splitlines()]
    (row,) = [r for r in rows if r.get("webhook")]
    assert (row["webhook"], row["state"], row["since"], row["position"]) == (
        sub_id, "webhook parked", iso(at), 3
    )  # fmt: skip
    assert row["last_error"] == "hooks.example: HTTP 503" and row["domain"] is None
    assert "webhook" not in ok(cfg, "status", "--domain", "a.example").output  # not a domain's
    ok(cfg, "webhook", "resume", sub_id)
    assert "webhook" not in ok(cfg, "status").output
