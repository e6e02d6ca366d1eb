"""Benchmark: one machine, a million signing identities.

Fills a store with N identities, each with an active ed25519 key (five events each, through
the store's batch path: SqliteEventStore.append with thousands of events per transaction),
D of them due now, then reports:

- the fill rate (events/s);
- the due query and an idle tick;
- the complete signing set read (what a start-up sync and a first-written target read);
- a tick rotating the D due identities (in-memory DNS and signer: rotator's own cost);
- the daemon (`rotator run`, a subprocess with this database and an audit key, no signer
  target: the keys are not real), started twice: first with no signer stamp (a complete
  signing set read and sync, as after a crash in the middle of a signer write), then as a
  normal restart (the stamp is in step). Each: time from exec to `daemon_started` (lock,
  log/projection check, orphan check, signer sync) and its resident memory (VmHWM) after
  its first, idle, tick.

Prints numbers; asserts nothing (see README 'Benchmarks').

    python tests/bench/bench_million.py [--identities 1000000] [--due 10000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rotator.adapters.keys.files import FsKeyStore
from rotator.adapters.runtime.workers import WorkerPool
from rotator.adapters.signers.fleet import SignerFleet
from rotator.adapters.signers.probing.prober import Prober
from rotator.adapters.signers.target import SignerTarget, key_reader
from rotator.adapters.store.row_spool import FileRows
from rotator.adapters.store.seal import Sealer, load_key
from rotator.adapters.store.sqlite import SqliteEventStore
from rotator.app import Application, Context
from rotator.config.targets import ProbeConfig, TargetConfig
from rotator.logging import configure
from tests.bench.bench_tick import fill
from tests.unit.fakes import FakeDns, FakeSigner, ManualClock, demo_policy

ROOT = Path(__file__).resolve().parents[2]
# The store's "now" is years ahead: the in-process tick finds the due keys due, the daemon
# (on the real clock) finds nothing due and its first tick is an idle one.
T0 = datetime(2031, 1, 1, 12, 0, tzinfo=UTC)


def app_for(store: SqliteEventStore, keys: Path) -> Application:
    dns, policy = FakeDns(), demo_policy()
    return Application(
        Context(store, lambda _n: policy, dns, dns, FsKeyStore(keys), FakeSigner(), ManualClock(T0))
    )


def peak_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmHWM")) / 1024


def children(pid: int) -> list[int]:
    """The daemon's worker processes (key generation, and the MAC check of a complete
    signing set read)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def daemon(work: Path, timeout: float = 600) -> tuple[float, float, float, float]:
    """(seconds to 'daemon_started', seconds when memory was read (after its first, idle,
    tick), the daemon's peak resident memory (VmHWM, MB) by then, and the sum of its
    worker processes' peaks)."""
    policies = work / "policies"
    policies.mkdir(mode=0o755, exist_ok=True)
    (policies / "demo.toml").write_text((ROOT / "policies" / "demo.toml").read_text())
    (policies / "demo.toml").chmod(0o644)
    cfg = work / "rotator.toml"
    cfg.write_text(
        f'database = "{work / "bench.db"}"\nkey_dir = "{work / "keys"}"\n'
        f'policy_dir = "{policies}"\ntick_seconds = 3600\nlog_format = "json"\n'
        '[dns]\nprimary = "127.0.0.1:1"\ntsig_name = "rotator"\n'
        'tsig_secret = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI="\n'
        f'[audit]\nkey_file = "{work / "audit.key"}"\nanchor = "{work / "anchor.log"}"\n'
    )
    cfg.chmod(0o600)
    t = time.perf_counter()
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("rotator")), "--config", str(cfg), "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    started = ticked = 0.0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if time.perf_counter() - t > timeout:
                break
            try:
                event = json.loads(line).get("event")
            except ValueError:
                continue
            if event == "daemon_started":
                started = time.perf_counter() - t
                break
            if event in ("tick_failed", "tick_crashed", "startup_sync_failed"):
                raise SystemExit(f"daemon: {line.strip()}")
        # the first tick runs at once and, nothing being due, logs nothing: give it time
        time.sleep(5.0)
        ticked = time.perf_counter() - t
        return started, ticked, peak_mb(proc.pid), sum(map(peak_mb, children(proc.pid)))
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def table_target(store: SqliteEventStore, work: Path, n: int) -> None:
    """The older [signer] OpenDKIM table (KeyTable + SigningTable) as a real target: its
    complete write from the store (MACs checked in two worker processes), then activations
    that patch the set the last write rendered."""
    dns, policy = FakeDns(), demo_policy()
    target = SignerTarget(
        TargetConfig(
            name="opendkim",
            format="opendkim",
            directory=work / "opendkim",
            legacy_tables=(work / "opendkim" / "KeyTable", work / "opendkim" / "SigningTable"),
        ),
        key_reader(lambda k: work / "keys" / k),
        Prober(ProbeConfig(), lambda z, nm: []),
    )
    pool = WorkerPool(2)
    ctx = Context(store, lambda _n: policy, dns, dns, FsKeyStore(work / "keys"),
                  SignerFleet([target], work / "signer.lock"), ManualClock(T0), pool=pool,
                  row_buffer=FileRows)  # fmt: skip
    ctx.safety_min_keys = 10**9
    app = Application(ctx)
    t = time.perf_counter()
    app.signing.sync()
    took = time.perf_counter() - t
    size = sum(p.stat().st_size for p in (work / "opendkim").iterdir()) / 1e6
    print(f"complete OpenDKIM table write from the store ({n} identities, {size:.0f} MB of "
          f"tables, MACs checked in 2 worker processes): {took:.1f}s")  # fmt: skip
    for batch in (100, 100):
        for i in range(n - batch, n):
            app.rotation.request(f"d{i}.example", "bench", "bench")
        ctx.clock.advance(1)  # type: ignore[attr-defined]
        t = time.perf_counter()
        report = app.lifecycle.tick()
        took, last = time.perf_counter() - t, app.signing.last_took
        print(f"tick rotating {batch} identities with that table as the target (the tables "
              f"patched from the last write, not read from the store): {took:.1f}s, of which "
              f"the activation {last:.1f}s ({report.succeeded} steps)")  # fmt: skip
    pool.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--identities", type=int, default=1_000_000)
    ap.add_argument("--due", type=int, default=10_000)
    ap.add_argument("--dir", type=Path, default=None, help="work here (the db is ~4 GB)")
    args = ap.parse_args()
    n, due = args.identities, args.due
    configure("json", level=logging.WARNING, stream=io.StringIO())
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        # sealed as the daemon's own store is: every row carries its MAC
        sealer = Sealer(load_key(work / "audit.key", create=True))
        store = SqliteEventStore(work / "bench.db", sealer=sealer)
        t = time.perf_counter()
        fill(store, n, due, T0)
        took = time.perf_counter() - t
        print(
            f"filled {n} identities ({5 * n} events) in {took:.0f}s ({5 * n / took:.0f} events/s)"
        )
        t = time.perf_counter()
        reps = 20
        for _ in range(reps):
            store.due_keys(T0)
            store.due_identities(T0)
        print(f"due query (keys + identities, {due} due of {n}): "
              f"{(time.perf_counter() - t) / reps * 1000:.1f} ms")  # fmt: skip
        app = app_for(store, work / "keys")
        t = time.perf_counter()
        entries = app.signing.entries()
        print(f"complete signing set read ({len(entries)} entries, MACs checked): "
              f"{time.perf_counter() - t:.1f}s")  # fmt: skip
        del entries
        app.signing.sync()
        t = time.perf_counter()
        report = app.lifecycle.tick()
        took = time.perf_counter() - t
        print(
            f"tick rotating {due} of {n} identities (ed25519, in-memory DNS and signer): "
            f"{took:.1f}s, {report.generated} generated, {report.succeeded} steps "
            f"({took / max(report.succeeded, 1) * 1000:.2f} ms per step)"
        )
        t = time.perf_counter()
        idle = app.lifecycle.tick()
        print(f"idle tick: {(time.perf_counter() - t) * 1000:.2f} ms ({idle.progressed} steps)")
        table_target(store, work, n)
        store.close()
        for label in (
            "first start (no signer stamp: the complete signing set is read and synced)",
            "restart (the signer stamp is in step with the log: no rewrite)",
        ):
            started, ticked, rss, workers = daemon(work)
            print(
                f"daemon {label}: {started:.1f}s to daemon_started; peak RSS {rss:.0f} MB at "
                f"{ticked:.0f}s (after its first, idle, tick), its worker processes "
                f"{workers:.0f} MB together"
            )


if __name__ == "__main__":
    main()
