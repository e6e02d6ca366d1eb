"""Benchmark: the HTTP API's reads at scale (issue 7: one identity p99 under 25 ms, a page
of 100 under 50 ms), against a real uvicorn server on 127.0.0.1 over a filled store.
Prints p50/p99; asserts nothing (see README 'Benchmarks').

    python tests/bench/bench_api.py [--identities 1000000] [--requests 500]
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--identities", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=500)
    args = ap.parse_args()
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
        finally:
            server.should_exit = True
            thread.join(10)
            app.close()


if __name__ == "__main__":
    main()
