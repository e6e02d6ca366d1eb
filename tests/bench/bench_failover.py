"""Benchmark: how long a failover takes. Two daemons on one private PostgreSQL (the failover
tests' nodes, tests/integration/failover.py: one BIND pair, two local signer targets, keys
sealed in the database), one domain with an active key. The leader is SIGKILLed N times;
each time the clock runs from the kill to (1) the standby holding the lease (the leader
row, read every 20 ms) and (2) the standby's /readyz saying its first tick as leader ran
(start-up convergence done: key files materialized, signers rewritten from the log). The
killed node is started again as the next standby before the next kill. Prints each kill
and min / median / p90 / max; asserts nothing (see README 'Benchmarks').

    python tests/bench/bench_failover.py [--kills 20] [--lease 4 --renew 2 --retry 1]

A kill lands at a random point of the leader's renewal cycle, so the lease has between
`lease - retry` and `lease` seconds left; the standby tries every `retry` seconds: the
lease is taken between `lease - retry` and `lease + retry` seconds after the kill.
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rotator.demo.localdns import BindPair
from tests.integration.failover import DOMAIN, kill, leader, two_nodes
from tests.integration.rotatorenv import RotatorEnv
from tests.support.postgres import running


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ready(port: int) -> bool:
    """The node's first tick as leader ran to its end (a standby's 200 says "standby")."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            return bool(r.status == 200 and r.read().decode().startswith("ready:"))
    except (urllib.error.URLError, OSError):
        return False


def until(what: str, predicate: Callable[[], object], timeout: float) -> float:
    """Seconds until `predicate()` held (polled every 20 ms)."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - started


def standby_started(env: RotatorEnv, before: int) -> bool:
    return env.tail(10_000).count('"role": "standby"') > before


def failover(
    url: str, nodes: dict[str, RotatorEnv], ports: dict[str, int], retry: float, lease: float
) -> tuple[float, float, str]:
    """Kill the leader anywhere in its renewal cycle: (seconds until the other node held
    the lease, until it ticked as leader, the line to print); the killed node is back as
    a standby when this returns."""
    now = leader(url)
    assert now is not None
    old, new = nodes[now[0]], nodes["b" if now[0] == "a" else "a"]
    name = new.workdir.name
    time.sleep(random.uniform(0, retry))
    before = old.tail(10_000).count('"role": "standby"')
    killed = time.monotonic()
    kill(old)
    until("the standby leads", lambda: (leader(url) or ("", 0))[0] == name, lease + retry + 30)
    took = time.monotonic() - killed
    until("its first tick", lambda: ready(ports[name]), 60)
    ticked = time.monotonic() - killed
    old.start()
    until("the killed node back as a standby", lambda: standby_started(old, before), 60)
    line = (
        f"{old.workdir.name} killed; {name} took the lease after {took:.2f}s, ticked as "
        f"leader after {ticked:.2f}s"
    )
    return took, ticked, line


def summary(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[max(0, round(0.9 * len(ordered)) - 1)]
    return (
        f"{name}: min {ordered[0]:.2f}s, median {statistics.median(ordered):.2f}s, "
        f"p90 {p90:.2f}s, max {ordered[-1]:.2f}s over {len(ordered)} kills"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--lease", type=float, default=4.0)
    parser.add_argument("--renew", type=float, default=2.0)
    parser.add_argument("--retry", type=float, default=1.0)
    args = parser.parse_args()
    lease = (args.lease, args.renew, args.retry)
    ports = {"a": free_port(), "b": free_port()}
    with tempfile.TemporaryDirectory() as tmp, running() as cluster:
        base = Path(tmp)
        bind = BindPair(base / "bind", zones=(DOMAIN,)).start()
        nodes: dict[str, RotatorEnv] = {}
        try:
            url = cluster.url(cluster.create_database())
            a, b = two_nodes(
                base, bind, url, lease=lease,
                extra=lambda n: f'\n[metrics]\nlisten = "127.0.0.1:{ports[n]}"\n',
            )  # fmt: skip
            nodes = {"a": a, "b": b}
            a.cli("domain", "add", DOMAIN, "--policy", "failover", "--actor", "bench")
            a.start()
            until("a leads", lambda: leader(url) is not None, 30)
            until("the first key active", lambda: a.key_in_state(DOMAIN, "active"), 60)
            b.start()
            until("b standing by", lambda: standby_started(b, 0), 30)
            print(f"lease {args.lease:g}s, renew {args.renew:g}s, retry {args.retry:g}s")
            taken: list[float] = []
            led: list[float] = []
            for i in range(args.kills):
                took, ticked, line = failover(url, nodes, ports, args.retry, args.lease)
                taken.append(took)
                led.append(ticked)
                print(f"kill {i + 1}: {line}")
            print(summary("lease taken", taken))
            print(summary("ticking as leader", led))
        finally:
            for env in nodes.values():
                env.close()
            bind.stop()


if __name__ == "__main__":
    main()
