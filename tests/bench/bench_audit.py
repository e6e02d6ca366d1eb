"""Benchmark: do `audit verify` and `db rebuild --check` stream with bounded memory?

Fills a sealed store (audit key and anchor, as `rotator` runs it) with N events through
SqliteEventStore.append, in batches of 5000: identities going through a key's lifecycle
(some failed steps, a quarter through a whole rotation to a revoked, destroyed key), the
identities' events interleaved as a real log has them. Then runs each operation in a
fresh process, so that the fill does not count in its peak RSS, and prints time, rate and
peak RSS (VmHWM of that process). Prints numbers; asserts nothing.

    python tests/bench/bench_audit.py [--events 1000000] [--keep DIR]

With --keep, a database already in DIR is measured again without a new fill. The database
is read through the OS page cache (warm): these are CPU numbers, not disk ones.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rotator.adapters.store.anchor import Anchor
from rotator.adapters.store.seal import Sealer, load_key
from rotator.adapters.store.sqlite import SqliteEventStore, open_store
from rotator.domain import events as ev

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BATCH = 5000  # events per append
CHUNK = 1000  # identities whose events are interleaved with each other
P = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" + "x" * 348 + "IDAQAB"  # an RSA-2048 p=


def lifecycle(i: int, t: datetime) -> list[ev.Event]:
    """One identity's events: a first key to active; every 3rd fails a publish once; every
    4th rotates to a second key and retires the first down to its removed tombstone."""
    d = f"d{i:07d}.example"
    h = timedelta(hours=1)

    def key(kid: str, selector: str, step: int) -> dict[str, Any]:
        return {"at": t + step * h, "key_id": kid, "identity": d, "domain": d, "selector": selector}

    def gen(kid: str, selector: str, step: int, replaces: str | None = None) -> ev.Event:
        return ev.KeyGenerated(
            **key(kid, selector, step),
            policy="default",
            algorithm="rsa",
            bits=2048,
            fingerprint=secrets.token_hex(32),
            zone=d,
            record_name=f"{selector}._domainkey.{d}.",
            record=f"v=DKIM1; k=rsa; p={P}",
            ttl=3600,
            replaces=replaces,
        )

    results = tuple({"server": f"ns{n}.example.net", "address": f"192.0.2.{n}"} for n in (1, 2))
    k1, k2 = f"{d}-1", f"{d}-2"
    out: list[ev.Event] = [
        ev.IdentityAdded(
            at=t,
            actor="alice",
            reason="onboarding",
            identity=d,
            domain=d,
            zone=d,
            policy="default",
            signing_pattern=f"*@{d}",
            customer=f"customer{i % 5000}",
        ),
        gen(k1, "s1", 1),
    ]
    if i % 3 == 0:
        out.append(
            ev.ActionFailed(
                **key(k1, "s1", 2),
                action="publish",
                error="SERVFAIL from ns1.example.net",
                attempt=1,
                retry_at=t + 3 * h,
            )
        )
    out += [
        ev.KeyPublished(**key(k1, "s1", 3), server="ns1.example.net"),
        ev.KeyVerified(**key(k1, "s1", 4), results=results, activate_at=t + 5 * h),
        ev.KeyActivated(
            **key(k1, "s1", 5),
            rotate_at=t + 1000 * h,
            targets=({"target": "opendkim", "written": True, "reloaded": True},),
        ),
    ]
    if i % 4 == 0:
        out += [
            gen(k2, "s2", 6, replaces=k1),
            ev.KeyPublished(**key(k2, "s2", 7), server="ns1.example.net"),
            ev.KeyVerified(**key(k2, "s2", 8), results=results, activate_at=t + 9 * h),
            ev.KeyActivated(**key(k2, "s2", 9), rotate_at=t + 2000 * h, previous=k1),
            ev.DrainStarted(**key(k1, "s1", 10), drain_until=t + 11 * h, successor=k2),
            ev.RevocationPublished(**key(k1, "s1", 11), server="ns1", record="v=DKIM1; p="),
            ev.KeyRevoked(**key(k1, "s1", 12), results=results),
            ev.KeyDestroyed(**key(k1, "s1", 13), tombstone_until=t + 20 * h),
            ev.TombstoneRemoved(**key(k1, "s1", 20), server="ns1.example.net"),
        ]
    return out


def log(n: int) -> Iterator[ev.Event]:
    """n events: CHUNK identities at a time, their lifecycles interleaved step by step."""
    emitted, first = 0, 0
    while True:
        chunk = [lifecycle(i, T0 + timedelta(days=i // CHUNK)) for i in range(first, first + CHUNK)]
        first += CHUNK
        for step in range(max(len(c) for c in chunk)):
            for events in chunk:
                if step < len(events):
                    yield events[step]
                    emitted += 1
                    if emitted == n:
                        return


def fill(path: Path, key_file: Path, anchor: Path, n: int) -> None:
    store = SqliteEventStore(path, sealer=Sealer(load_key(key_file, False)), anchor=Anchor(anchor))
    batch: list[ev.Event] = []
    for event in log(n):
        batch.append(event)
        if len(batch) == BATCH:
            store.append(batch, {})
            batch = []
    store.append(batch, {})
    store.close()


def peak_mb() -> float:
    """This process's peak resident memory. Not ru_maxrss: Linux carries the parent's peak
    at fork into a child's ru_maxrss across exec, so a child of a big parent reads big."""
    status = Path("/proc/self/status").read_text()
    return next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmHWM")) / 1024


def measure(op: str, path: Path, key_file: Path, anchor: Path) -> None:
    """In a fresh process: open the store as the CLI does (read-only, with the audit key and
    the anchor), run one operation, print what it found, its time and this process's peak
    RSS as JSON."""
    store = open_store(
        path, readonly=True, sealer=Sealer(load_key(key_file, False)), anchor=Anchor(anchor)
    )
    events = int(store.info()["events"])
    before_mb = peak_mb()
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    t = time.perf_counter()
    if op == "verify":
        report = store.audit()
        found: Any = {"ok": report.ok, "sealed": report.sealed, "problem": report.problem}
    else:
        found = {"differences": len(store.rebuild(check_only=True))}
    seconds = time.perf_counter() - t
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "events": events,
                "seconds": seconds,
                "rss_mb": peak_mb(),
                "before_mb": before_mb,
                "user": usage.ru_utime - cpu.ru_utime,
                "sys": usage.ru_stime - cpu.ru_stime,
                **found,
            }
        )
    )


def detail(r: dict[str, Any]) -> str:
    # the machine may be shared: CPU time says what wall time alone cannot
    return (
        f"  (CPU {r['user']:.1f} s user + {r['sys']:.1f} s sys; RSS {r['before_mb']:.0f} MB "
        f"before the operation; load average {os.getloadavg()[0]:.1f})"
    )


def run(op: str, path: Path, key_file: Path, anchor: Path) -> dict[str, Any]:
    args = ["--measure", op, "--db", str(path), "--key", str(key_file), "--anchor", str(anchor)]
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"measuring {op} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--keep", type=Path, help="fill (or reuse) the database in this directory")
    ap.add_argument("--measure", choices=("verify", "check"), help=argparse.SUPPRESS)
    ap.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--key", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--anchor", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        measure(args.measure, args.db, args.key, args.anchor)
        return
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        path, key_file, anchor = base / "bench.db", base / "audit.key", base / "anchor.log"
        if not path.exists():
            key_file.unlink(missing_ok=True)
            load_key(key_file, True)
            t = time.perf_counter()
            fill(path, key_file, anchor, args.events)
            fill_s = time.perf_counter() - t
            print(
                f"filled {args.events} events (append, batches of {BATCH}) in {fill_s:.0f} s "
                f"({args.events / fill_s:.0f} events/s), "
                f"database {os.path.getsize(path) / 1e9:.2f} GB"
            )
        v = run("verify", path, key_file, anchor)
        state = "intact" if v["ok"] else f"NOT intact: {v['problem']}"
        print(
            f"audit verify over {v['events']} events: {v['seconds']:.1f} s "
            f"({v['events'] / v['seconds']:.0f} events/s), {state}, "
            f"peak RSS {v['rss_mb']:.0f} MB"
        )
        print(detail(v))
        c = run("check", path, key_file, anchor)
        print(
            f"rebuild --check over {c['events']} events: {c['seconds']:.1f} s "
            f"({c['events'] / c['seconds']:.0f} events/s), {c['differences']} differences, "
            f"peak RSS {c['rss_mb']:.0f} MB"
        )
        print(detail(c))


if __name__ == "__main__":
    main()
