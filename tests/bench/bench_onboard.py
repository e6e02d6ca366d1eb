"""Benchmark: onboarding at the key generation limit, and the key pool, against a real BIND
primary + secondary on loopback (RSA-2048, the worker pool of the daemon: one process per
core).

1. The limit: the time the worker pool takes to generate N RSA-2048 keys, nothing else.
2. Onboarding N domains (a CSV import's events, then the daemon's ticks) until every key is
   active, i.e. verified on both nameservers and in the signer: key generation, publishing
   and verification overlap (keys come back in chunks and move on while the rest are made).
3. With a key pool of N (filled beforehand): onboarding N domains, then an emergency over
   every key with --keystore-intact (replacements from the pool), each until every key is
   active; and, for comparison, --all without it (the pool is discarded: fresh keys).

Prints numbers; asserts nothing (see README 'Benchmarks').

    python tests/bench/bench_onboard.py [--domains 1000]
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rotator.adapters.keys.files import FsKeyStore
from rotator.adapters.keys.pool import FsKeyPool
from rotator.adapters.runtime.workers import WorkerPool
from rotator.app import Application, Scope
from rotator.demo.localdns import BindPair
from rotator.domain.states import State
from rotator.logging import configure
from tests.bench.bench_emergency import ZONE, application, emergency


def limit(pool: WorkerPool, work: Path, n: int) -> float:
    """Seconds for the worker pool to generate n RSA-2048 keys (the floor of onboarding)."""
    store = FsKeyStore(work / "limit-keys")
    t = time.perf_counter()
    futures = [
        pool.executor().submit(store.generate, uuid.uuid4().hex[:16], "rsa", 2048) for _ in range(n)
    ]
    for f in futures:
        f.result()
    return time.perf_counter() - t


def until_active(app: Application, n: int, timeout: float = 900) -> float:
    t = time.perf_counter()
    while time.perf_counter() - t < timeout:
        app.lifecycle.tick()
        if len(app.store.list_keys(state=State.ACTIVE)) >= n:
            return time.perf_counter() - t
        time.sleep(0.02)
    raise SystemExit(f"not all {n} keys active within {timeout}s")


def onboard(app: Application, n: int, policy: str, prefix: str) -> float:
    events = [
        app.onboarding.identity_event(f"{prefix}{i}.{ZONE}", policy, ZONE, f"*@{prefix}{i}.ex")
        for i in range(n)
    ]
    app.ctx.recorder.append(events)  # as `customer import` records them
    return until_active(app, n)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--domains", type=int, default=1000)
    args = ap.parse_args()
    n = args.domains
    configure("json", level=logging.ERROR, stream=io.StringIO())
    workers = WorkerPool()
    try:
        with (
            tempfile.TemporaryDirectory() as tmp,
            BindPair(Path(tmp) / "bind", zones=(ZONE,)) as bind,
        ):
            work = Path(tmp)
            app = application(work, bind)
            app.ctx.pool = workers
            limit(workers, work, 2 * workers.workers)  # start the workers: not measured
            floor = limit(workers, work, n)
            print(
                f"key generation limit: {n} RSA-2048 keys in {floor:.1f}s on "
                f"{workers.workers} worker processes ({n / floor:.0f} keys/s)"
            )
            took = onboard(app, n, "rsa", "d")
            print(
                f"onboard {n} RSA-2048 domains to active (verified on 2 servers): "
                f"{took:.1f}s = {took / floor:.2f}x the key generation limit"
            )
        with (
            tempfile.TemporaryDirectory() as tmp,
            BindPair(Path(tmp) / "bind", zones=(ZONE,)) as bind,
        ):
            work = Path(tmp)
            app = application(work, bind)
            app.ctx.pool = workers
            app.ctx.keypool = FsKeyPool(app.ctx.keystore)  # type: ignore[arg-type]
            app.ctx.pool_sizes = {("rsa", 2048): n}
            t = time.perf_counter()
            while app.keypool.missing():
                app.keypool.refill(budget_s=60)
            print(
                f"fill a key pool of {n} RSA-2048 keys (idle time): {time.perf_counter() - t:.1f}s"
            )
            took = onboard(app, n, "rsa", "p")
            print(f"with the pool: onboard {n} RSA-2048 domains to active: {took:.1f}s")
            while app.keypool.missing():
                app.keypool.refill(budget_s=60)
            out, total = emergency(app, Scope(everything=True, keystore_intact=True), n)
            print(
                f"with the pool: --all --keystore-intact over {n} RSA-2048 domains: out of "
                f"signer {out * 1000:.0f} ms, revoked everywhere + replacements active "
                f"{total:.1f}s"
            )
            out, total = emergency(app, Scope(everything=True), n)
            print(
                f"--all (pool discarded as compromised) over {n} RSA-2048 domains: out of "
                f"signer {out * 1000:.0f} ms, revoked everywhere + replacements active "
                f"{total:.1f}s"
            )
    finally:
        workers.shutdown()


if __name__ == "__main__":
    main()
