"""Benchmark: delivering the webhooks of 1,000 activations made in one tick.

Activates N new identities in one tick (the whole App over in-memory DNS, as the unit
tests), subscribes a loopback receiver to identity.active, then runs the daemon's
Deliveries (courier thread, its own read-only connection, real HTTP, signatures, a cursor
write per acknowledged delivery) until the receiver holds all N. Prints the tick's time
and the delivery's. Asserts nothing but that every event arrived once, in log order.

    python tests/bench/bench_webhooks.py [--identities 1000]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import structlog

from rotator.adapters.store.sqlite import SqliteEventStore
from rotator.adapters.webhooks.sender import HttpSender
from rotator.adapters.webhooks.vault import FileVault
from rotator.app.webhook_delivery import Deliveries, DeliverySettings
from rotator.app.webhooks import Webhooks
from tests.unit.conftest import UnitEnv, default_policies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--identities", type=int, default=1000)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    got: list[int] = []
    done = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_POST(self) -> None:
            got.append(json.loads(self.rfile.read(int(self.headers["content-length"])))["position"])
            if len(got) >= args.identities:
                done.set()
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    with tempfile.TemporaryDirectory() as tmp:
        env = UnitEnv(Path(tmp), default_policies())
        vault = FileVault(Path(tmp) / "rotator.db")
        env.ctx.webhook_vault = vault
        hooks = Webhooks(env.ctx, vault)
        hooks.add(f"http://127.0.0.1:{server.server_address[1]}/", ["identity.active"], "b", "")
        for i in range(args.identities):
            env.app.onboarding.add_identity(f"d{i}.example", "demo")
        started = time.perf_counter()
        env.app.lifecycle.tick()
        tick = time.perf_counter() - started
        deliveries = Deliveries(
            lambda: SqliteEventStore(Path(tmp) / "rotator.db", readonly=True),
            HttpSender(), vault, DeliverySettings(poll=0.05), env.ctx.recorder.append, env.clock,
        )  # fmt: skip
        started = time.perf_counter()
        deliveries.start()
        finished = done.wait(600)
        took = time.perf_counter() - started
        deliveries.stop()
        env.store.close()
    server.shutdown()
    server.server_close()
    serving.join(5)
    assert finished and got == sorted(got) and len(set(got)) == args.identities
    print(f"{args.identities} activations: tick {tick:.1f} s")
    print(f"webhooks delivered in {took:.2f} s ({args.identities / took:.0f}/s), in log order")


if __name__ == "__main__":
    main()
