"""Benchmark: does a tick cost O(keys due) rather than O(all keys)?

Fills a store with N active keys (none due) plus D due keys, then times `due_keys` + the
projection reads the daemon does per tick, and a full tick with in-memory DNS. Prints
numbers; asserts nothing (see README 'Benchmarks').

    python tests/bench/bench_tick.py [--keys 20000] [--due 100] [--trace]
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rotator.adapters.keys.files import FsKeyStore
from rotator.adapters.store.sqlite import SqliteEventStore
from rotator.app import Application, Context
from rotator.domain import events as ev
from rotator.logging import configure
from rotator.ports import EventStore
from tests.unit.fakes import FakeDns, FakeSigner, ManualClock, demo_policy

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def fill(store: EventStore, n: int, due: int, t0: datetime = T0) -> None:
    """n identities with an active key whose rotation is a day away; `due` of them due now."""
    T0 = t0
    batch: list[ev.Event] = []
    for i in range(n):
        d = f"d{i}.example"
        kid = f"k{i:08d}"
        rotate_at = T0 - timedelta(seconds=1) if i < due else T0 + timedelta(days=1)
        ids: dict[str, Any] = {
            "at": T0,
            "key_id": kid,
            "identity": d,
            "domain": d,
            "selector": "s1.myesp",
        }
        batch += [
            ev.IdentityAdded(
                at=T0, identity=d, domain=d, zone=d, policy="demo", signing_pattern=f"*@{d}"
            ),
            ev.KeyGenerated(
                **ids,
                policy="demo",
                algorithm="ed25519",
                bits=256,
                fingerprint="00",
                zone=d,
                record_name=f"s1.myesp._domainkey.{d}.",
                record="v=DKIM1; k=ed25519; p=AAAA",
                ttl=60,
            ),
            ev.KeyPublished(**ids, server="x"),
            ev.KeyVerified(**ids, results=(), activate_at=T0),
            ev.KeyActivated(**ids, rotate_at=rotate_at),
        ]
        if len(batch) >= 20000:
            store.append(batch, {})
            batch = []
    store.append(batch, {})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=20000)
    ap.add_argument("--due", type=int, default=100)
    ap.add_argument(
        "--trace", action="store_true", help="peak memory with tracemalloc (about 3x slower)"
    )
    args = ap.parse_args()
    configure("json", level=logging.WARNING, stream=io.StringIO())  # numbers only
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteEventStore(Path(tmp) / "bench.db")
        try:
            measure(store, Path(tmp), args.keys, args.due, args.trace)
        finally:
            store.close()


def measure(
    store: EventStore, tmp: Path, keys: int, due: int, trace: bool = False
) -> dict[str, float]:
    """Fill `store`, then time the due query, the start-up sync, a tick, an idle tick and a
    rebuild check, printing each line; the figures in seconds (fill: events per second)."""
    t = time.perf_counter()
    fill(store, keys, due)
    fill_s = time.perf_counter() - t
    print(
        f"filled {keys} identities ({5 * keys} events) in {fill_s:.1f}s "
        f"({5 * keys / fill_s:.0f} events/s)"
    )

    reps = 50
    t = time.perf_counter()
    for _ in range(reps):
        store.due_keys(T0)
        ids = store.due_identities(T0)
    q_ms = (time.perf_counter() - t) / reps * 1000
    print(f"due query (keys + identities, {len(ids)} due of {keys}): {q_ms:.2f} ms")

    clock = ManualClock(T0)
    dns = FakeDns()
    policy = demo_policy()
    keystore = FsKeyStore(tmp / "keys")
    app = Application(Context(store, lambda _n: policy, dns, dns, keystore, FakeSigner(), clock))
    t = time.perf_counter()
    app.signing.sync()  # as the daemon's start-up: from then on the signer takes changes
    sync_s = time.perf_counter() - t
    print(f"start-up signer sync of {keys} identities: {sync_s:.2f}s")
    # the fill's gigabyte is still being written back by the kernel: let it land, so
    # that the tick's fsyncs (commits, key files) do not queue behind it
    os.sync()
    if trace:
        tracemalloc.start()
    t = time.perf_counter()
    report = app.lifecycle.tick()
    tick_s = time.perf_counter() - t
    traced = ""
    if trace:
        traced = f", peak traced memory {tracemalloc.get_traced_memory()[1] / 1e6:.1f} MB"
        tracemalloc.stop()
    per_step = tick_s / max(report.succeeded, 1) * 1000
    print(
        f"tick rotating {due} of {keys} identities (ed25519, in-memory DNS): "
        f"{tick_s:.2f}s, {report.generated} generated, {report.succeeded} steps "
        f"({per_step:.2f} ms per step, {tick_s / max(due, 1) * 1000:.1f} ms per "
        f"rotation){traced}"
    )
    t = time.perf_counter()
    idle = app.lifecycle.tick()
    idle_s = time.perf_counter() - t
    print(f"idle tick with nothing due: {idle_s * 1000:.2f} ms ({idle.progressed} steps)")
    t = time.perf_counter()
    diffs = store.rebuild(check_only=True)
    rebuild_s = time.perf_counter() - t
    print(
        f"rebuild --check over {store.info()['events']} events: "
        f"{rebuild_s:.1f}s, {len(diffs)} differences"
    )
    return {
        "fill": 5 * keys / fill_s, "due_query": q_ms / 1000, "sync": sync_s, "tick": tick_s,
        "idle": idle_s, "rebuild": rebuild_s,
    }  # fmt: skip


if __name__ == "__main__":
    main()
