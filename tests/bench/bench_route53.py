"""Benchmark: the route53 backend's requests and its own CPU time, and a run against moto's
server (an emulator of Route 53's API on loopback, not AWS: its times are moto's, not
Route 53's). Route 53 takes 5 requests a second per account, so the request counts are
what bounds a real run; the line "at 5 requests/s" says what they would take there.

- chunking: N RSA-2048 UPSERTs cut into ChangeBatch requests (no I/O): requests, CPU.
- one zone: N records published in one batch, then deleted (the deletes read the zone in
  pages), against moto: wall time and requests of each kind.
- many zones: Z hosted zones, one record each, in one batch (8 zones at a time).

    python tests/bench/bench_route53.py [--records 3000] [--zones 100]
"""

from __future__ import annotations

import argparse
import base64
import secrets
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rotator.adapters.dns.route53.changes import chunks, txt_value, upsert
from rotator.adapters.dns.route53.publisher import Route53Publisher, make_client
from rotator.ports import RecordChange
from tests.support.route53api import Route53Api

RATE = 5.0  # Route 53's requests a second per account


def rsa2048() -> str:
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(secrets.token_bytes(294)).decode()


class Counted:
    """The client, counting requests by operation."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.counts: Counter[str] = Counter()

    def __getattr__(self, operation: str) -> Any:
        method = getattr(self.client, operation)

        def call(**params: Any) -> Any:
            self.counts[operation] += 1
            return method(**params)

        return call


def chunking(n: int) -> None:
    names = [f"s{i}.myesp._domainkey.bench.test." for i in range(n)]
    text = rsa2048()
    started = time.process_time()
    batches = chunks(upsert(name, 300, txt_value(name, text)) for name in names)
    cpu = time.process_time() - started
    print(
        f"chunking: {n} RSA-2048 UPSERTs -> {len(batches)} requests "
        f"({n / len(batches):.1f} a request), {cpu * 1000:.0f} ms CPU; "
        f"at {RATE:g} requests/s: {len(batches) / RATE:.1f} s"
    )


def report(what: str, wall: float, counts: Counter[str]) -> None:
    total = sum(counts.values())
    kinds = ", ".join(f"{op} {c}" for op, c in sorted(counts.items()))
    print(
        f"{what}: {wall:.2f} s against moto; {total} requests ({kinds}); "
        f"at {RATE:g} requests/s: {total / RATE:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--zones", type=int, default=100)
    args = parser.parse_args()
    chunking(args.records)
    zones = [f"c{i}.bench.test" for i in range(args.zones)]
    with tempfile.TemporaryDirectory() as tmp:
        api = Route53Api(Path(tmp), zones=["bench.test", *zones]).start()
        try:
            client = Counted(make_client("us-east-1", api.url, api.keys, timeout=10))
            pub = Route53Publisher(client, where="moto")
            text = rsa2048()
            names = [f"s{i}.myesp._domainkey.bench.test." for i in range(args.records)]
            started = time.perf_counter()
            (result,) = pub.publish([("bench.test", [RecordChange(n, 300, text) for n in names])])
            assert isinstance(result, str), result
            report(
                f"one zone, {args.records} records", time.perf_counter() - started, client.counts
            )
            client.counts.clear()
            started = time.perf_counter()
            (result,) = pub.publish([("bench.test", [RecordChange(n, 300, None) for n in names])])
            assert isinstance(result, str), result
            report(
                f"one zone, {args.records} deletes", time.perf_counter() - started, client.counts
            )
            client.counts.clear()
            batch = [(z, [RecordChange(f"s1.myesp._domainkey.{z}.", 300, text)]) for z in zones]
            started = time.perf_counter()
            results = pub.publish(batch)
            assert all(isinstance(r, str) for r in results), results
            report(
                f"{args.zones} zones, one record each", time.perf_counter() - started, client.counts
            )
        finally:
            api.stop()


if __name__ == "__main__":
    main()
