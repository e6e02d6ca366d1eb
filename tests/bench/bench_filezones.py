"""Benchmark: a rotation tick on the backends that rebuild files, with 100,000 records
already owned in one zone: one publish() of 200 new keys' records and 200 old keys revoked
to `p=` (what a tick of 200 rotations sends), measured with the real tinydns-data and
data.cdb installs (kind = "tinydns", two tinydns processes: one root copied into, one
through a deliver command), and with the real nsd-checkzone and nsd-control reload
(kind = "zonefile", an NSD primary and a secondary). Also printed: the first publish of the
100,000 records, and how long after publish() returned each server served the new records.
tinydns listens on port 53 only: run as root. Prints numbers; asserts nothing.

    python tests/bench/bench_filezones.py [--records 100000] [--rotations 200] [--ticks 3]
        [--only tinydns|zonefile]
"""

from __future__ import annotations

import argparse
import base64
import secrets
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rotator.adapters.dns.factory import BUILDERS
from rotator.config.backends import KINDS
from rotator.domain.errors import PublishError
from rotator.ports import Publisher, RecordChange
from tests.integration.backends.nsd_servers import NsdServers
from tests.integration.backends.servers import BackendServers, Start, served
from tests.integration.backends.tinydns_servers import TinydnsServers

REVOKED = "v=DKIM1; p="


def rsa_record() -> str:  # an RSA-2048 record's length: 410 octets
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(secrets.token_bytes(294)).decode()


def publisher(servers: BackendServers, workdir: Path) -> Publisher:
    table = tomllib.loads(servers.backend_table(workdir))["dns"]["backends"][0]
    table["timeout"] = 300  # the first publish of every record builds it all
    settings = KINDS[table["kind"]].model_validate(table)
    return BUILDERS[table["kind"]](settings.config(workdir))


def name(servers: BackendServers, i: int, generation: int = 0) -> str:
    return f"k{i:06d}g{generation}.myesp._domainkey.{servers.zone}."


def timed(pub: Publisher, zone: str, changes: list[RecordChange]) -> float:
    started = time.perf_counter()
    (result,) = pub.publish([(zone, changes)])
    took = time.perf_counter() - started
    if isinstance(result, PublishError):
        raise SystemExit(f"publish failed: {result.reason}")
    return took


def until_served(servers: BackendServers, rec: str, text: str, limit: float = 120.0) -> str:
    """Seconds until each address serves `text` at `rec`."""
    started = time.perf_counter()
    pending = {f"{ip}:{port}" for ip, port in servers.addresses}
    seen: dict[str, float] = {}
    while pending and time.perf_counter() - started < limit:
        for where, (_, texts) in served(servers, rec).items():
            if where in pending and texts == [text]:
                seen[where] = time.perf_counter() - started
                pending.discard(where)
        time.sleep(0.02)
    roles = {"{}:{}".format(*servers.server(r)): r for r in ("primary", "secondary")}
    shown = ", ".join(f"{roles[w]} {w} {s:.2f}s" for w, s in sorted(seen.items()))
    return shown + "".join(f", {roles[w]} {w} NOT within {limit:g}s" for w in sorted(pending))


def bench(kind: str, servers: BackendServers, workdir: Path, args: Any) -> None:
    pub = publisher(servers, workdir)
    zone = servers.zone
    record = rsa_record()
    fill = [RecordChange(name(servers, i), 3600, record) for i in range(args.records)]
    took = timed(pub, zone, fill)
    print(f"{kind}: first publish of {args.records} records (410 octets each): {took:.2f}s")
    seen = until_served(servers, fill[-1].name, record)
    print(f"{kind}:   served after publish() returned: {seen}")
    retiring = [c.name for c in fill[-args.rotations :]]
    for tick in range(1, args.ticks + 1):
        new = rsa_record()
        published = [name(servers, i, tick) for i in range(args.rotations)]
        changes = [RecordChange(n, 3600, new) for n in published]
        changes += [RecordChange(n, 3600, REVOKED) for n in retiring]
        took = timed(pub, zone, changes)
        print(
            f"{kind}: tick {tick}: {args.rotations} published + {args.rotations} revoked among "
            f"{args.records} records: publish() {took:.2f}s"
            + (" (target under 5 s: NOT met)" if took >= 5 else "")
        )
        seen = until_served(servers, published[0], new)
        print(f"{kind}:   served after publish() returned: {seen}")
        retiring = published  # the next rotation revokes what this one published


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--rotations", type=int, default=200)
    ap.add_argument("--ticks", type=int, default=3)
    ap.add_argument("--only", choices=("tinydns", "zonefile"))
    args = ap.parse_args()
    starts: dict[str, Start] = {"tinydns": TinydnsServers, "zonefile": NsdServers}
    for kind, start in starts.items():
        if args.only and kind != args.only:
            continue
        with tempfile.TemporaryDirectory(prefix=f"bench-{kind}-") as tmp:
            servers = start(Path(tmp) / "servers")
            try:
                bench(kind, servers, Path(tmp), args)
            finally:
                servers.stop()


if __name__ == "__main__":
    main()
