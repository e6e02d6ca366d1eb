"""Benchmark: publish + verify at scale with one zone per customer (ns-delegation) against
N identities in one zone (third-party), on a real BIND primary + secondary on loopback.

ns-delegation: the ESP's pair (127.0.0.1/.2) serves myesp._domainkey.customerN.example
for every customer, with NS dkim1/dkim2.myesp.test (as dns.esp_nameservers). The customers'
own DNS (a second pair on 127.0.0.3/.4, same port) serves customerN.example with the
delegation, which rotator checks at the parent before a key goes beyond published. The
customers are added through Application.onboarding (as `rotator customer import`), and
the daemon's tick runs with the real publisher and probe (ed25519) until every key is
active, verified on both ESP servers (keys are generated, and so published, 16 at a time).
Each is run again ("one batch") with publishing and verification held until every key
exists, so that one tick publishes N keys in one batch and verifies N in one batch.
BIND's own start-up (loading the zones, the secondary transferring them) is setup and is
printed apart, as is the CPU time of the named processes. Prints numbers; asserts nothing.

    python tests/bench/bench_zones.py [--zones 1000] [--only ns|one] [--bind-defaults]
        [--dns-timeout 5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rotator.adapters.dns.probe import AuthoritativeProbe
from rotator.adapters.dns.rfc2136 import Rfc2136Publisher
from rotator.adapters.keys.files import FsKeyStore
from rotator.adapters.store.sqlite import SqliteEventStore
from rotator.app import Application, Context
from rotator.app.onboarding import CustomerRow
from rotator.config.policies import PolicySet
from rotator.demo.localdns import BindPair, ensure_loopback_alias
from rotator.domain.states import Action, State
from rotator.logging import configure
from rotator.timeutil import SystemClock
from tests.support.legacy_signer import OpenDkimSigner

ESP_NS = ("dkim1.myesp.test", "dkim2.myesp.test")  # what customers delegate to
HOSTS_ZONE = "myesp.test"  # holds the A records of ESP_NS
ONE_ZONE = "bench.test"
CUSTOMER_IPS = ("127.0.0.3", "127.0.0.4")
TIMEOUT = 5.0  # dns.timeout's default; the daemon's customer-check deadline is 3x that
# What an ESP serving thousands of zones sets (BIND's defaults: 20 NOTIFYs and 20 SOA
# refresh queries a second, 2 transfers per primary), or the secondary lags by N/20 s.
BIND_TUNING = (
    "notify-rate 1000;",
    "startup-notify-rate 1000;",
    "serial-query-rate 1000;",
    "transfers-in 100;",
    "transfers-out 100;",
    "transfers-per-ns 100;",
)
POLICY = """
[key]
algorithm = "ed25519"
[rotation]
interval = "1h"
[drain]
max_queue_time = "3s"
[dns]
ttl = 2
[selector]
template = "s{hh}{mi}{ss}.{esp}"
esp = "myesp"
[verify]
timeout = "120s"
[retry]
base = "0.2s"
max = "2s"
"""


class Meter:
    """Wraps the handlers, the publisher and the probe of one Application: calls, seconds
    and when each step last finished (the last publish ends when every key is published)."""

    def __init__(self, app: Application, pids: list[int]) -> None:
        self.lock = threading.Lock()
        self.pids = pids  # the named processes, whose CPU time is shown apart
        self.reset()
        handlers = app.lifecycle.handlers
        for action, handler in list(handlers.items()):
            handlers[action] = self.timed(f"step {action.value}", handler)
        pub, probe = app.ctx.publisher, app.ctx.probe
        assert isinstance(pub, Rfc2136Publisher) and isinstance(probe, AuthoritativeProbe)
        ver = app.lifecycle.verifying
        for obj, name, label in (
            (pub, "publish", "publisher.publish (per batch) *"),
            (pub, "_send", "UPDATE messages *"),
            (ver, "_customer_checked", "verify: customer DNS checks"),
            (ver, "_verify_ready", "verify: ESP servers"),
            (probe, "observe", "probe.observe *"),
            (probe, "observe_many", "probe.observe_many *"),
            (probe, "delegation", "probe.delegation *"),
            (probe, "_discover", "probe: NS + address discovery *"),
            (probe.resolver, "resolve", "resolver lookups *"),
            (app.lifecycle.generation, "generate", "generation (incl. nested steps)"),
        ):
            self.wrap(obj, name, label)
        failed = app.ctx.recorder.failed

        def count_failed(keys: Any, action: Any, reason: str, *a: Any, **kw: Any) -> None:
            self.failures[f"{action.value}: {reason.split(':')[0][:60]}"] += len(keys)
            failed(keys, action, reason, *a, **kw)

        self.wrap(app.ctx.recorder, "failed", "", count_failed)

    def reset(self) -> None:
        self.t0 = time.perf_counter()
        self.cpu0 = (time.process_time(), self.bind_cpu())
        self.calls: Counter[str] = Counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.last_end: dict[str, float] = {}
        self.largest: dict[str, tuple[int, float]] = {}  # step -> (keys, s) of its biggest call
        self.failures: Counter[str] = Counter()

    def wrap(
        self, obj: object, name: str, label: str, fn: Callable[..., Any] | None = None
    ) -> None:
        """Replace obj.name (a bound method) by a timed (or the given) wrapper."""
        setattr(obj, name, fn or self.timed(label, getattr(obj, name)))

    def timed(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kw: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                end = time.perf_counter()
                with self.lock:
                    self.calls[label] += 1
                    self.seconds[label] += end - start
                    self.last_end[label] = end - self.t0
                    if label.startswith("step ") and isinstance(args[0], list):
                        size = len(args[0])
                        if size > self.largest.get(label, (0, 0.0))[0]:
                            self.largest[label] = (size, end - start)

        return run

    def bind_cpu(self) -> float:
        total = 0.0
        for pid in self.pids:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def cpu(self) -> str:
        ours, bind = time.process_time() - self.cpu0[0], self.bind_cpu() - self.cpu0[1]
        return f"CPU: rotator {ours:.2f}s, BIND ({len(self.pids)} named) {bind:.2f}s"

    def at(self, step: str) -> float:
        return self.last_end.get(f"step {step}", float("nan"))

    def breakdown(self) -> str:
        return "\n".join(
            f"    {label:<34} {self.calls[label]:6d} calls {self.seconds[label]:8.2f} s"
            for label in sorted(self.calls, key=lambda k: -self.seconds[k])
        )


def application(
    work: Path, esp: BindPair, resolvers: list[str], esp_ns: frozenset[str], timeout: float
) -> Application:
    pol = work / "policies"
    pol.mkdir(exist_ok=True)
    (pol / "ed.toml").write_text(POLICY)
    return Application(
        Context(
            store=SqliteEventStore(work / "rotator.db"),
            policy=PolicySet(pol).get,
            publisher=Rfc2136Publisher(
                esp.primary, esp.port, esp.tsig_name, esp.tsig_secret, timeout=timeout
            ),
            probe=AuthoritativeProbe(port=esp.port, timeout=timeout, resolver=resolvers),
            keystore=FsKeyStore(work / "keys"),
            signer=OpenDkimSigner(work / "KeyTable", work / "SigningTable", ["true"]),
            clock=SystemClock(),
            esp_nameservers=esp_ns,
            customer_check_s=3 * timeout,  # as rotator/bootstrap.py
        )
    )


def settle(
    app: Application, n: int, limit: float, skip: frozenset[str] | set[str] = frozenset()
) -> tuple[float, int, Counter[State]]:
    """Ticks (as the daemon does, back to back) until n keys (not in `skip`) are active:
    (seconds, ticks, states)."""
    t = time.perf_counter()
    ticks = 0
    states: Counter[State] = Counter()
    while time.perf_counter() - t < limit:
        app.lifecycle.tick()
        ticks += 1
        states = Counter(k.state for k in app.store.list_keys() if k.key_id not in skip)
        if states[State.ACTIVE] == n:
            return time.perf_counter() - t, ticks, states
        time.sleep(0.05)
    return float("nan"), ticks, states


@contextmanager
def pairs(
    base: Path, n: int, ns_mode: bool, options: tuple[str, ...]
) -> Iterator[tuple[BindPair, BindPair | None, str]]:
    """The ESP pair (and for ns-delegation the customers' pair) started, and a setup line."""
    hosts = {HOSTS_ZONE: ["dkim1 IN A 127.0.0.1", "dkim2 IN A 127.0.0.2"]}
    zones = [f"myesp._domainkey.customer{i}.example" for i in range(n)] if ns_mode else []
    esp_zones = [HOSTS_ZONE, *(zones or [ONE_ZONE])]
    limit = 60 + n * 0.2
    kw: dict[str, Any] = {"options": options, "start_timeout": limit}
    with ExitStack() as stack:
        t = time.perf_counter()
        esp = BindPair(base / "esp", zones=esp_zones, ns_names=ESP_NS, extra_records=hosts, **kw)
        stack.enter_context(esp)
        setup = (
            f"ESP pair: {len(esp_zones)} zones loaded by the primary in "
            f"{esp.started_in['primary']:.2f}s, transferred to the secondary in "
            f"{esp.started_in['secondary']:.2f}s"
        )
        customer = None
        if ns_mode:
            delegation = [f"myesp._domainkey IN NS {ns}." for ns in ESP_NS]
            customer = BindPair(
                base / "customer",
                zones=[f"customer{i}.example" for i in range(n)],
                ips=CUSTOMER_IPS,
                port=esp.port,
                extra_records={f"customer{i}.example": delegation for i in range(n)},
                **kw,
            )
            stack.enter_context(customer)
            setup += (
                f"; customers' pair: {n} zones in {customer.started_in['primary']:.2f}s + "
                f"{customer.started_in['secondary']:.2f}s"
            )
        setup += f" (all BIND setup {time.perf_counter() - t:.1f}s)"
        yield esp, customer, setup


def rows_for(n: int, ns_mode: bool) -> list[CustomerRow]:
    if ns_mode:
        return [
            CustomerRow(f"Customer{i}", f"customer{i}.example", "ns-delegation", "ed")
            for i in range(n)
        ]
    return [
        CustomerRow(
            f"Customer{i}",
            f"customer{i}.example",
            "third-party",
            "ed",
            signing_domain=f"customer{i}.{ONE_ZONE}",
            zone=ONE_ZONE,
        )
        for i in range(n)
    ]


def report(meter: Meter, ticks: int, states: Counter[State], note: str) -> None:
    shown = dict(sorted((s.value, c) for s, c in states.items()))
    print(f"    ({ticks} ticks; {note}; states {shown}; {meter.cpu()})")
    for step, (size, secs) in sorted(meter.largest.items()):
        print(f"    largest {step}: {size} keys in {secs:.2f}s")
    print(meter.breakdown())
    print("    (* on worker threads: seconds summed over threads; the rest is wall time)")
    for reason, count in meter.failures.most_common(5):
        print(f"    failed: {count} x {reason}")


def run(
    n: int, ns_mode: bool, batch: bool, options: tuple[str, ...], limit: float, timeout: float
) -> None:
    """One fresh BIND setup and database: n customers onboarded, then ticks until all
    their keys are active (with `batch`, publishing and verification are held until every
    key is generated, so that one tick publishes all and verifies all, as after a restart)."""
    with tempfile.TemporaryDirectory() as tmp, pairs(Path(tmp), n, ns_mode, options) as p:
        esp, customer, setup = p
        # no recursive resolver on loopback: names the ESP's primary refuses (the customers'
        # zones) are asked of the customers' primary next (as tests/integration/test_tenancy)
        resolvers = [f"{esp.primary}:{esp.port}"]
        if customer is not None:
            resolvers.append(f"{customer.primary}:{customer.port}")
        app = application(Path(tmp), esp, resolvers, frozenset(ESP_NS), timeout)
        t = time.perf_counter()
        idents = app.onboarding.add_customers(rows_for(n, ns_mode))
        problems = app.onboarding.zone_problems(idents)
        onboard = time.perf_counter() - t
        pids = [
            named.proc.pid
            for pair in (esp, customer)
            if pair
            for named in pair.named.values()
            if named.proc
        ]
        meter = Meter(app, pids)
        if batch:
            hold_until_generated(app, n, limit)
            meter.reset()
        total, ticks, states = settle(app, n, limit)
        kind = "ns-delegation zones" if ns_mode else "identities in one zone"
        label = f"{n} {kind} (ed25519)" + (", one batch" if batch else "")
        updates = meter.calls["UPDATE messages *"]
        print(
            f"{label}: published in {meter.at('publish'):.2f} s ({updates} UPDATE "
            f"messages), verified on 2 servers in {meter.at('verify'):.2f} s, "
            f"all active in {total:.2f} s"
        )
        print(f"    BIND setup (not rotator): {setup}")
        report(meter, ticks, states, f"onboarding {onboard:.2f}s, zone problems {len(problems)}")


def hold_until_generated(app: Application, n: int, limit: float) -> None:
    """Ticks with publishing and verification held until n keys exist."""
    handlers = app.lifecycle.handlers
    held = {a: handlers[a] for a in (Action.PUBLISH, Action.VERIFY)}
    for action in held:
        handlers[action] = lambda keys, now, report: None
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline and len(app.store.list_keys()) < n:
        app.lifecycle.tick()
    handlers.update(held)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zones", type=int, default=1000)
    ap.add_argument("--only", choices=("ns", "one"))
    ap.add_argument("--bind-defaults", action="store_true", help="no BIND rate tuning")
    ap.add_argument("--limit", type=float, default=600.0, help="seconds to wait for active")
    ap.add_argument(
        "--dns-timeout", type=float, default=TIMEOUT, help="dns.timeout (customer checks: 3x)"
    )
    args = ap.parse_args()
    if not all(ensure_loopback_alias(ip) for ip in ("127.0.0.2", *CUSTOMER_IPS)):
        raise SystemExit("needs loopback aliases 127.0.0.2-4 (run as root)")
    configure("json", level=logging.ERROR, stream=io.StringIO())
    options = () if args.bind_defaults else BIND_TUNING
    for ns_mode in (True, False):
        if args.only != ("one" if ns_mode else "ns"):
            for batch in (False, True):
                run(args.zones, ns_mode, batch, options, args.limit, args.dns_timeout)


if __name__ == "__main__":
    main()
