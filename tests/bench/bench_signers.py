"""Benchmark: activating 1,000 identities at once, with today's single OpenDKIM target (the
older [signer] table: two tables naming rotator's key files) and with two targets of
different formats (OpenDKIM with its own key copies, rspamd), written locally, probes off.
Target: two targets within 2x of one. Prints numbers; asserts nothing.

    python tests/bench/bench_signers.py [--identities 1000] [--algorithm rsa]
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rotator.adapters.keys.files import FsKeyStore
from rotator.adapters.signers.fleet import SignerFleet
from rotator.adapters.signers.probing.prober import Prober
from rotator.adapters.signers.target import SignerTarget, key_reader
from rotator.adapters.store.sqlite import SqliteEventStore
from rotator.app import Application, Context, TickReport
from rotator.config.targets import ProbeConfig, TargetConfig
from rotator.domain import events as ev
from rotator.domain.states import State
from rotator.logging import configure
from tests.unit.fakes import FakeDns, ManualClock, demo_policy

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def make_keys(keystore: FsKeyStore, n: int, algorithm: str) -> list[str]:
    """Real key files, made once for every run (RSA-2048 takes a while)."""
    bits = 2048 if algorithm == "rsa" else 256
    return [keystore.generate(f"k{i:08d}", algorithm, bits).fingerprint for i in range(n)]


def fill(store: SqliteEventStore, fingerprints: list[str], algorithm: str) -> None:
    """One identity per key, each key verified and due to activate now."""
    batch: list[ev.Event] = []
    for i, fingerprint in enumerate(fingerprints):
        d = f"d{i}.example"
        kid = f"k{i:08d}"
        ids: dict[str, Any] = {
            "at": T0, "key_id": kid, "identity": d, "domain": d, "selector": "s1.myesp"
        }  # fmt: skip
        batch += [
            ev.IdentityAdded(
                at=T0, identity=d, domain=d, zone=d, policy="demo", signing_pattern=f"*@{d}"
            ),
            ev.KeyGenerated(
                **ids,
                policy="demo",
                algorithm=algorithm,
                bits=256,
                fingerprint=fingerprint,
                zone=d,
                record_name=f"s1.myesp._domainkey.{d}.",
                record="v=DKIM1; p=AAAA",
                ttl=60,
            ),
            ev.KeyPublished(**ids, server="x"),
            ev.KeyVerified(**ids, results=(), activate_at=T0),
        ]
    store.append(batch, {})


def fleet(work: Path, keystore: FsKeyStore, two: bool) -> SignerFleet:
    read = key_reader(keystore.path)
    none = Prober(ProbeConfig(), lambda zone, name: [])
    if not two:
        legacy = TargetConfig(
            name="opendkim",
            format="opendkim",
            directory=work / "od",
            legacy_tables=(work / "od/KeyTable", work / "od/SigningTable"),
            table_mode=0o644,
        )
        return SignerFleet([SignerTarget(legacy, read, none)], work / "lock")
    targets = [
        TargetConfig(name="od", format="opendkim", directory=work / "od2", algorithms=("rsa",)),
        TargetConfig(name="rs", format="rspamd", directory=work / "rs"),
    ]
    return SignerFleet([SignerTarget(t, read, none) for t in targets], work / "lock")


def run(keystore: FsKeyStore, fingerprints: list[str], algorithm: str, two: bool) -> float:
    n = len(fingerprints)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        store = SqliteEventStore(work / "bench.db")
        fill(store, fingerprints, algorithm)
        policy = demo_policy(key={"algorithm": algorithm})
        dns = FakeDns()
        ctx = Context(
            store,
            lambda _n: policy,
            dns,
            dns,
            keystore,
            fleet(work, keystore, two),
            ManualClock(T0),
        )
        app = Application(ctx)
        keys = store.list_keys(state=State.VERIFIED)
        started = time.perf_counter()
        app.signing.activate(keys, T0 + timedelta(seconds=1), TickReport())
        took = time.perf_counter() - started
        assert len(store.list_keys(state=State.ACTIVE)) == n, "not every key activated"
        store.close()
        return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--identities", type=int, default=1000)
    ap.add_argument("--algorithm", default="rsa", choices=["rsa", "ed25519"])
    args = ap.parse_args()
    configure("json", level=logging.ERROR, stream=io.StringIO())
    with tempfile.TemporaryDirectory() as tmp:
        keystore = FsKeyStore(Path(tmp) / "keys")
        fingerprints = make_keys(keystore, args.identities, args.algorithm)
        one = run(keystore, fingerprints, args.algorithm, two=False)
        two = run(keystore, fingerprints, args.algorithm, two=True)
    print(
        f"activate {args.identities} identities, one OpenDKIM target (older [signer]): {one:.2f}s"
    )
    print(
        f"activate {args.identities} identities, OpenDKIM + rspamd targets: {two:.2f}s "
        f"({two / one:.2f}x)"
    )


if __name__ == "__main__":
    main()
