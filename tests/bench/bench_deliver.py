"""Benchmark: the memory of a write to a signer target behind a deliver command (rotator's
installer, as the OpenDKIM unit pair in deploy/ runs it) at a million identities.

Fills a store with N identities, each with an active key (as bench_million), and gives every
key a key file the size of an RSA-2048 key's PEM (the same bytes for each: a target copies
key files, it does not parse them). Then, each in a process of its own:

- a complete write of an OpenDKIM target (KeyTable, SigningTable and N key files) whose
  deliver command is the installer: a version 4 bundle streamed a line at a time;
- an emergency on one domain: the removal alone (tables without the key, its file wiped).

Prints each one's wall time and the peak resident memory (ru_maxrss) of rotator's process
and of the installer's. Asserts nothing (see README 'Benchmarks').

    python tests/bench/bench_deliver.py [--identities 1000000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import io
import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from rotator.adapters.keys.files import FsKeyStore
from rotator.adapters.runtime.workers import WorkerPool
from rotator.adapters.signers.fleet import SignerFleet
from rotator.adapters.signers.probing.prober import Prober
from rotator.adapters.signers.target import SignerTarget, key_reader
from rotator.adapters.store.row_spool import FileRows
from rotator.adapters.store.seal import Sealer, load_key
from rotator.adapters.store.sqlite import SqliteEventStore
from rotator.app import Application, Context, Scope
from rotator.config.targets import ProbeConfig, TargetConfig
from rotator.logging import configure
from tests.bench.bench_million import T0
from tests.bench.bench_tick import fill
from tests.unit.fakes import FakeDns, ManualClock, demo_policy

ROOT = Path(__file__).resolve().parents[2]
INSTALLER = ROOT / "rotator" / "adapters" / "signers" / "installer"
# the installer, with its peak memory appended to a file when it exits
MEASURED = """
import resource, runpy, sys
installer, directory, out = sys.argv[1:4]
sys.argv = [installer, directory]
try:
    runpy.run_path(installer, run_name="__main__")
finally:
    with open(out, "a") as fh:
        fh.write(f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n")
"""


def app_for(work: Path) -> tuple[Application, WorkerPool]:
    store = SqliteEventStore(
        work / "bench.db", sealer=Sealer(load_key(work / "audit.key", create=False))
    )
    target = SignerTarget(
        TargetConfig(
            name="opendkim",
            format="opendkim",
            directory=work / "target",
            algorithms=("ed25519",),
            deliver=(
                sys.executable,
                "-c",
                MEASURED,
                str(INSTALLER),
                str(work / "target"),
                str(work / "installer.maxrss"),
            ),
            key_mode=0o600,
            table_mode=0o640,
            timeout=3600,
        ),
        key_reader(lambda k: work / "keys" / f"{k}.pem"),
        Prober(ProbeConfig(), lambda z, nm: []),
    )
    dns, policy, pool = FakeDns(), demo_policy(), WorkerPool(2)
    ctx = Context(store, lambda _n: policy, dns, dns, FsKeyStore(work / "keys"),
                  SignerFleet([target], work / "signer.lock"), ManualClock(T0), pool=pool,
                  row_buffer=FileRows)  # fmt: skip
    return Application(ctx), pool


def phase(name: str, work: Path) -> None:
    """One write, in this process; prints its time and this process's peak memory."""
    configure("json", level=logging.WARNING, stream=io.StringIO())
    app, pool = app_for(work)
    t = time.perf_counter()
    if name == "complete":
        results = app.signing.sync()
    else:
        plan = app.emergency.plan(Scope(domain="d5.example"))
        results = list(app.emergency.declare(plan, "bench", "bench").targets)
    took = time.perf_counter() - t
    pool.shutdown()
    assert all(r.ok for r in results), results
    mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{took:.1f} {mb:.0f}")


def measure(name: str, work: Path) -> tuple[float, float, float]:
    """(seconds, rotator's peak MB, the installer's peak MB)."""
    (work / "installer.maxrss").unlink(missing_ok=True)
    proc = subprocess.run(
        [sys.executable, __file__, "--phase", name, "--dir", str(work)],
        capture_output=True,
        text=True,
        check=False,
        timeout=7200,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{name}: {proc.stderr or proc.stdout}")
    out = proc.stdout.split()
    installer = max(int(x) for x in (work / "installer.maxrss").read_text().split()) / 1024
    return float(out[0]), float(out[1]), installer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--identities", type=int, default=1_000_000)
    ap.add_argument("--dir", type=Path, default=None, help="work here (needs ~8 GB)")
    ap.add_argument("--phase", choices=("complete", "emergency"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        phase(args.phase, args.dir)
        return
    n = args.identities
    configure("json", level=logging.WARNING, stream=io.StringIO())
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        store = SqliteEventStore(
            work / "bench.db", sealer=Sealer(load_key(work / "audit.key", create=True))
        )
        t = time.perf_counter()
        fill(store, n, 0, T0)
        store.close()
        pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        keys = work / "keys"
        keys.mkdir(mode=0o700)
        for i in range(n):
            (keys / f"k{i:08d}.pem").write_bytes(pem)
        print(f"{n} identities and {n} key files of {len(pem)} bytes: "
              f"{time.perf_counter() - t:.0f}s")  # fmt: skip
        for name, what in (
            ("complete", f"complete write ({n} key files, KeyTable, SigningTable)"),
            ("emergency", "emergency on one domain (the removal alone)"),
        ):
            took, mine, installer = measure(name, work)
            print(f"{what} through the installer: {took:.1f}s; peak RSS rotator {mine:.0f} MB, "
                  f"installer {installer:.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
