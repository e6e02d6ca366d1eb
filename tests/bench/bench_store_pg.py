"""Benchmark: the store on PostgreSQL against SQLite, in the same run on the same machine.

Each store is filled through its batch path (the audit MACs off, as bench_tick), then the
same measurements as bench_tick: the due query, the start-up signer sync, a tick rotating
`--due` among `--keys` identities (in-memory DNS and signer), an idle tick and a rebuild
check. PostgreSQL is a private server started for the run (tests/support/postgres.py)
with fsync on, as SQLite runs with synchronous=FULL. Prints numbers; asserts nothing
(see README 'Benchmarks').

    python tests/bench/bench_store_pg.py [--keys 200000] [--due 200]
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rotator.adapters.store.postgres.store import PostgresEventStore
from rotator.adapters.store.sqlite import SqliteEventStore
from rotator.logging import configure
from rotator.ports import EventStore
from tests.bench.bench_tick import measure
from tests.support.postgres import running


def one(name: str, store: EventStore, tmp: Path, keys: int, due: int) -> dict[str, float]:
    print(f"--- {name}")
    try:
        return measure(store, tmp, keys, due)
    finally:
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=200_000)
    ap.add_argument("--due", type=int, default=200)
    ap.add_argument("--only", choices=("sqlite", "postgresql"), help="measure one store only")
    args = ap.parse_args()
    configure("json", level=logging.WARNING, stream=io.StringIO())  # numbers only
    with tempfile.TemporaryDirectory() as tmp, running(fsync=True) as cluster:
        base = Path(tmp)
        (base / "sqlite").mkdir()
        (base / "postgresql").mkdir()
        got: dict[str, dict[str, float]] = {}
        if args.only in (None, "sqlite"):
            store: EventStore = SqliteEventStore(base / "sqlite" / "bench.db")
            got["sqlite"] = one("SQLite", store, base / "sqlite", args.keys, args.due)
        if args.only in (None, "postgresql"):
            url = cluster.url(cluster.create_database())
            store = PostgresEventStore(url)
            got["pg"] = one("PostgreSQL 15", store, base / "postgresql", args.keys, args.due)
        print(f"(load average {os.getloadavg()[0]:.1f} at the end)")
        if len(got) == 2:
            lite, pg = got["sqlite"], got["pg"]
            print(
                f"PostgreSQL / SQLite: tick {pg['tick'] / lite['tick']:.2f}x (target at most "
                f"1.5x), fill {pg['fill']:.0f} events/s (target at least 15000) against "
                f"{lite['fill']:.0f}, due query {pg['due_query'] / lite['due_query']:.2f}x, "
                f"start-up sync {pg['sync'] / lite['sync']:.2f}x, rebuild check "
                f"{pg['rebuild'] / lite['rebuild']:.2f}x"
            )


if __name__ == "__main__":
    main()
