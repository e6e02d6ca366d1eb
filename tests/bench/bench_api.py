"""Benchmark: the HTTP API at scale against a real uvicorn server on 127.0.0.1 over a
filled store: reads (issue 7: one identity p99 under 25 ms, a page of 100 under 50 ms),
then customers created (target: at least 300 per second sustained at 1,000,000
identities), from client threads in a process of their own (not competing with the
server for its GIL), each on a keep-alive connection and with an Idempotency-Key.
Prints rates and p50/p99; asserts nothing (see README 'Benchmarks').

    python tests/bench/bench_api.py [--identities 1000000] [--requests 500]
                                    [--creates 3000] [--threads 4]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rotator.adapters.store.sqlite import SqliteEventStore
from rotator.api.app import create_app
from rotator.api.state import ApiState
from rotator.bootstrap import build
from rotator.config.settings import load_config
from rotator.logging import configure
from tests.bench.bench_tick import fill
from tests.support.http import Client
from tests.unit.clirun import db_path, write_config


def percentiles(times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"p50 {statistics.median(ms):7.2f} ms  p99 {p99:7.2f} ms"


def timed(client: Client, paths: list[str], headers: dict[str, str]) -> list[float]:
    times = []
    for path in paths:
        start = time.perf_counter()
        response = client.get(path, headers=headers)
        times.append(time.perf_counter() - start)
        assert response.status_code == 200, response.text
    return times


def fsync_ms(where: Path, n: int = 50) -> float:
    """The disk's median fsync of a 4 KiB append, as the creates meet it (two per commit:
    the log's and the anchor's)."""
    path = where / "fsync-probe"
    times = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(n):
            os.write(fd, b"x" * 4096)
            start = time.perf_counter()
            os.fsync(fd)
            times.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(times) * 1000


def create_customers(
    port: int, secret: str, first: int, count: int
) -> tuple[list[float], list[str]]:
    """POST /v1/customers `count` times from one client thread on a keep-alive connection:
    the latencies, and the answers that were not 201."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    times, errors = [], []
    for i in range(first, first + count):
        body = json.dumps({"customer": f"cust{i}", "domain": f"new{i}.example", "mode": "cname",
                           "policy": "demo", "zone": "cname.esp-dkim.net"})  # fmt: skip
        headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json",
                   "Idempotency-Key": f"create-{i}"}  # fmt: skip
        start = time.perf_counter()
        conn.request("POST", "/v1/customers", body, headers)
        response = conn.getresponse()
        text = response.read()
        times.append(time.perf_counter() - start)
        if response.status != 201:
            errors.append(f"{response.status} {text[:200]!r}")
    conn.close()
    return times, errors


def create_load(
    port: int, secret: str, creates: int, threads: int
) -> tuple[float, list[float], list[str]]:
    """In the client process: `creates` spread over `threads` threads, all started at
    once. (wall seconds, latencies, errors)"""
    share = [creates // threads + (1 if t < creates % threads else 0) for t in range(threads)]
    firsts = [sum(share[:t]) for t in range(threads)]
    results: list[tuple[list[float], list[str]]] = [([], [])] * threads

    def run(t: int) -> None:
        results[t] = create_customers(port, secret, firsts[t], share[t])

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - start
    return wall, [x for r in results for x in r[0]], [e for r in results for e in r[1]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--identities", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--creates", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()
    # the daemon's JSON log lines, written as it writes them, but not to the terminal
    devnull = open(os.devnull, "w")  # noqa: SIM115 - for the whole run
    configure("json", stream=devnull)
    n = args.identities
    with tempfile.TemporaryDirectory() as tmp:
        cfg = write_config(Path(tmp))
        db_path(cfg).parent.mkdir(parents=True)
        store = SqliteEventStore(db_path(cfg))
        start = time.perf_counter()
        fill(store, n, 0)
        store.close()
        print(f"filled {n} identities in {time.perf_counter() - start:.1f} s")
        app = build(load_config(cfg), command=False, via="api")
        _, secret = app.tokens.create("bench", ("read",), "bench")
        _, panel = app.tokens.create("panel", ("provision",), "bench")
        headers = {"Authorization": f"Bearer {secret}"}
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(
            uvicorn.Config(create_app(ApiState(app)), host="127.0.0.1", port=port,
                           log_config=None, access_log=False)
        )  # fmt: skip
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        try:
            client = Client(f"http://127.0.0.1:{port}")
            rng = random.Random(7)
            names = [f"d{rng.randrange(n)}.example" for _ in range(args.requests)]
            timed(client, [f"/v1/identities/{d}" for d in names[:20]], headers)  # warm up
            one = timed(client, [f"/v1/identities/{d}" for d in names], headers)
            print(f"GET /v1/identities/{{domain}}       {percentiles(one)}  (target p99 < 25 ms)")
            # pages from random cursors: a keyset page costs the same at any depth
            pages = [f"/v1/identities?limit=100&after={d}" for d in names]
            many = timed(client, pages, headers)
            print(f"GET /v1/identities?limit=100       {percentiles(many)}  (target p99 < 50 ms)")
            # the clients in a process of their own, started fresh (no copy of this one)
            with multiprocessing.get_context("spawn").Pool(1) as clients:
                clients.apply(time.sleep, (0,))  # started before the clock runs
                cpu = os.times()
                wall, times, errors = clients.apply(
                    create_load, (port, panel, args.creates, args.threads)
                )
                used = os.times()
            assert not errors, errors[:5]
            # the server's own CPU (this process; the clients are another)
            server_ms = (used.user + used.system - cpu.user - cpu.system) * 1000 / args.creates
            print(
                f"POST /v1/customers ({args.creates} from {args.threads} client threads): "
                f"{args.creates / wall:.0f} creates/s over {wall:.1f} s, {percentiles(times)}"
                "  (target at least 300/s)"
            )
            print(
                f"    server CPU {server_ms:.2f} ms per create; disk fsync p50 "
                f"{fsync_ms(Path(tmp)):.2f} ms; load average {os.getloadavg()[0]:.1f}"
            )
        finally:
            server.should_exit = True
            thread.join(10)
            app.close()


if __name__ == "__main__":
    main()
