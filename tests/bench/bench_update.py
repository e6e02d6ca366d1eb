"""Benchmark: the RFC 2136 publisher alone. N new RSA-2048-sized records into one zone of a
real BIND primary (with its secondary), as one apply(): built, packed into UPDATEs of at most
60,000 octets, signed (TSIG) and sent one after another, each accepted before the next.
Prints every run and the median; asserts nothing (see README 'Benchmarks').

    python tests/bench/bench_update.py [--records 1000] [--runs 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rotator.adapters.dns.rfc2136 import Rfc2136Publisher
from rotator.ports import RecordChange
from tests.bench.nameserver_limit import rsa_record
from tests.integration.backends.bind_servers import start_bind


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        servers = start_bind(Path(tmp))
        try:
            pair, zone = servers.pair, servers.zone
            pub = Rfc2136Publisher(
                pair.primary, pair.port, pair.tsig_name, pair.tsig_secret, timeout=10.0
            )
            took = []
            for run in range(args.runs):
                changes = [
                    RecordChange(f"r{run}-{i}.myesp._domainkey.{zone}.", 60, rsa_record())
                    for i in range(args.records)
                ]
                started = time.perf_counter()
                pub.apply(zone, changes)
                took.append(time.perf_counter() - started)
                print(
                    f"run {run + 1}: {args.records} records in {pub.last_message_count} "
                    f"UPDATEs, accepted in {took[-1] * 1000:.0f} ms",
                    flush=True,
                )
        finally:
            servers.stop()
    print(f"median of {args.runs}: {statistics.median(took) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
