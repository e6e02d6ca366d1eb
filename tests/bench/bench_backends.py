"""Benchmark: every DNS backend at the nameservers' speed. For each kind the backend tests
start (tests/integration/backends STARTERS), its real servers are started and the daemon,
configured with that backend alone, onboards N RSA-2048 domains (third-party identities
`d<i>.<zone>`, every record in the backend's zone) from a filled key pool until every key is
active, i.e. verified on both addresses and in the signer. Beside it, in the same run, the
nameservers' own limit: a BIND primary + secondary taking the same number of records by raw
RFC 2136 UPDATEs (about 125 records each, TCP, TSIG), every record checked on each server
(tests/bench/nameserver_limit.py). For rfc2136 also `emergency --all --keystore-intact` over
the N keys (replacements from the refilled pool) beside the limit of its DNS work (N records
revoked to `p=` and N new ones).

Prints each run and the medians with their ratio to the limit; asserts nothing (see README
'Benchmarks').

    python tests/bench/bench_backends.py [--kind rfc2136 ...] [--domains 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rotator.app import Scope
from rotator.bootstrap import App, build
from rotator.config.settings import load_config
from rotator.logging import configure
from tests.bench import nameserver_limit
from tests.bench.bench_emergency import POLICY, emergency
from tests.bench.bench_onboard import until_active
from tests.integration.backends.bind_servers import start_bind
from tests.integration.backends.conftest import STARTERS
from tests.integration.backends.servers import BackendServers
from tests.integration.backends.test_contract import POLICIES, backend_config


def application(work: Path, servers: BackendServers, n: int) -> App:
    """The daemon's App from a rotator.toml whose only DNS is the backend under test (the
    contract tests' config) and whose one policy keeps a pool of n RSA-2048 keys."""
    policies = work / "policies"
    policies.mkdir(parents=True)
    # bench_emergency's policy, RSA-2048 with a pool of n, no standby
    text = POLICY.format(alg="rsa", bits=f"bits = 2048\npool = {n}", standby="false")
    (policies / "bench.toml").write_text(text)
    cfg = backend_config(work, servers)
    text = cfg.read_text()
    theirs = f'policy_dir = "{POLICIES}"'
    assert theirs in text, "backend_config no longer names the policy directory this way"
    cfg.write_text(text.replace(theirs, f'policy_dir = "{policies}"'))
    return build(load_config(cfg), command=False)


def fill_pool(app: App) -> float:
    t = time.perf_counter()
    while app.keypool.missing():
        app.keypool.refill(budget_s=60)
    return time.perf_counter() - t


def onboard(app: App, zone: str, n: int) -> float:
    events = [
        app.onboarding.identity_event(f"d{i}.{zone}", "bench", zone, f"*@d{i}.{zone}")
        for i in range(n)
    ]
    app.ctx.recorder.append(events)  # as `customer import` records them
    return until_active(app, n)


def limit_of(work: Path, measure: Callable[..., nameserver_limit.Limit], n: int) -> float:
    """The nameservers' limit on a BIND pair of its own (stopped before rotator runs)."""
    servers = start_bind(work)
    try:
        limit = measure(servers.pair, servers.zone, n)
    finally:
        servers.stop()
    print(f"    nameservers' limit {limit.total_s:.2f}s ({nameserver_limit.describe(limit)})")
    return limit.total_s


def run(kind: str, n: int, with_emergency: bool) -> tuple[float, float, float, float]:
    """(onboarding, its limit, emergency, its limit) in seconds; the emergency's are 0 when
    not measured."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        onboard_limit = limit_of(work / "limit", nameserver_limit.onboarding, n)
        servers = STARTERS[kind](work / "servers")
        app = application(work / "rotator", servers, n)
        try:
            filled = fill_pool(app)
            took = onboard(app, servers.zone, n)
            print(
                f"    onboard {n} RSA-2048 domains from the pool to active: {took:.2f}s = "
                f"{took / onboard_limit:.2f}x the limit (pool filled in {filled:.1f}s, not timed)"
            )
            if not with_emergency:
                return took, onboard_limit, 0.0, 0.0
            fill_pool(app)
            out, total = emergency(app, Scope(everything=True, keystore_intact=True), n)
        finally:
            app.close()
            servers.stop()
        emergency_limit = limit_of(work / "limit2", nameserver_limit.emergency, n)
        print(
            f"    --all --keystore-intact over {n} keys: out of signer {out * 1000:.0f} ms, "
            f"revoked everywhere + replacements active {total:.2f}s = "
            f"{total / emergency_limit:.2f}x its limit, "
            f"{total / onboard_limit:.2f}x the onboarding limit"
        )
        return took, onboard_limit, total, emergency_limit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", action="append", choices=sorted(STARTERS), help="default: all")
    ap.add_argument("--domains", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--emergency-kind",
        action="append",
        help="kinds whose emergency is measured too (default: rfc2136; `-`: none)",
    )
    args = ap.parse_args()
    n = args.domains
    configure("json", level=logging.ERROR, stream=io.StringIO())
    emergency_kinds = set(args.emergency_kind or ["rfc2136"])
    summary = []
    for kind in args.kind or sorted(STARTERS):
        runs = []
        for i in range(args.runs):
            print(f"{kind} run {i + 1}:", flush=True)
            runs.append(run(kind, n, kind in emergency_kinds))
        took, limit, em, em_limit = (statistics.median(r[k] for r in runs) for k in range(4))
        line = (
            f"{kind:<10} onboard {n} RSA-2048 domains from the pool to active: median {took:.2f}s,"
            f" nameservers' limit {limit:.2f}s: {took / limit:.2f}x"
        )
        if em:
            line += (
                f"\n{'':<10} --all --keystore-intact over {n} keys: median {em:.2f}s, "
                f"its limit {em_limit:.2f}s: {em / em_limit:.2f}x ({em / limit:.2f}x the "
                "onboarding limit)"
            )
        summary.append(line)
    print(f"\nmedians of {args.runs} runs (target: within 1.5x of the limit):")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
