"""Benchmark: emergency latency against a real BIND primary + secondary on loopback.

Measures the interval from the emergency command (keys marked compromised, signer
rewritten) to "old keys revoked on every nameserver and replacements active" (the end of
the append that recorded the last of those steps), for:
1 domain with a standby key, 1 domain without, and N domains with --all (ed25519, rsa2048).
Prints numbers; asserts nothing (see README 'Benchmarks').

    python tests/bench/bench_emergency.py [--domains 1000]
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rotator.adapters.dns.probe import AuthoritativeProbe
from rotator.adapters.dns.rfc2136 import Rfc2136Publisher
from rotator.adapters.keys.files import FsKeyStore
from rotator.adapters.store.sqlite import SqliteEventStore
from rotator.app import Application, Context, Scope
from rotator.config.policies import PolicySet
from rotator.demo.localdns import BindPair
from rotator.domain.states import State
from rotator.logging import configure
from rotator.timeutil import SystemClock
from tests.support.legacy_signer import OpenDkimSigner

ZONE = "bench.test"
POLICY = """
[key]
algorithm = "{alg}"
{bits}
[rotation]
interval = "1h"
[drain]
max_queue_time = "3s"
[dns]
ttl = 2
[selector]
template = "s{{hh}}{{mi}}{{ss}}.{{esp}}"
[retry]
base = "0.2s"
max = "2s"
[standby]
enabled = {standby}
"""


def application(work: Path, bind: BindPair) -> Application:
    pol = work / "policies"
    pol.mkdir(exist_ok=True)
    for name, alg, bits, standby in (
        ("rsa", "rsa", "bits = 2048", "false"),
        ("ed", "ed25519", "", "false"),
        ("rsa-standby", "rsa", "bits = 2048", "true"),
    ):
        (pol / f"{name}.toml").write_text(POLICY.format(alg=alg, bits=bits, standby=standby))
    policies = PolicySet(pol)
    probe_kw: dict[str, object] = (
        {"port": bind.port, "resolver": [f"{bind.primary}:{bind.port}"]}
        if bind.two_addresses
        else {"nameservers": [f"{ip}:{port}" for ip, port in bind.addresses]}
    )
    return Application(
        Context(
            store=SqliteEventStore(work / "rotator.db"),
            policy=policies.get,
            publisher=Rfc2136Publisher(bind.primary, bind.port, bind.tsig_name, bind.tsig_secret),
            probe=AuthoritativeProbe(timeout=2.0, **probe_kw),  # type: ignore[arg-type]
            keystore=FsKeyStore(work / "keys"),
            signer=OpenDkimSigner(work / "KeyTable", work / "SigningTable", ["true"]),
            clock=SystemClock(),
        )
    )


def settle(app: Application, want_active: int, want_standby: int = 0, limit: float = 900) -> float:
    t = time.perf_counter()
    while time.perf_counter() - t < limit:
        app.lifecycle.tick()
        keys = app.store.list_keys()
        active = sum(1 for k in keys if k.state is State.ACTIVE)
        standby = sum(1 for k in keys if k.state is State.VERIFIED)
        if active == want_active and standby >= want_standby:
            return time.perf_counter() - t
        time.sleep(0.05)
    raise SystemExit(f"did not settle within {limit}s")


class Reached:
    """When every compromised key's revocation was verified and n replacements were active:
    the end of the append that recorded the last of those steps. A tick goes on to work no
    mail waits for (wiping the old keys) before it returns; that is not part of the
    figure, as the nameservers' limit has nothing like it either."""

    def __init__(self, app: Application, ids: set[str], n: int, t0: float) -> None:
        self.ids, self.n, self.t0 = ids, n, t0
        self.revoked: set[str] = set()
        self.activated = 0
        self.at: float | None = None
        store = app.store
        real = store.append

        def append(events: Any, expected: Any) -> Any:
            appended = real(events, expected)
            for e in events:
                kind = type(e).__name__
                if kind == "KeyRevoked" and e.key_id in self.ids:
                    self.revoked.add(e.key_id)
                elif kind == "KeyActivated":
                    self.activated += 1
            if self.at is None and self.revoked == self.ids and self.activated >= self.n:
                self.at = time.perf_counter() - self.t0
            return appended

        store.append = append  # type: ignore[method-assign]


def emergency(app: Application, scope: Scope, n: int) -> tuple[float, float]:
    """(seconds until the signer no longer holds the keys, seconds until they are revoked
    everywhere and every identity has an active replacement: see Reached)."""
    t0 = time.perf_counter()
    plan = app.emergency.plan(scope)
    ids = {k.key_id for k in plan.compromise}
    reached = Reached(app, ids, n, t0)
    app.emergency.declare(plan, "bench", "benchmark")
    out_of_signer = time.perf_counter() - t0
    while time.perf_counter() - t0 < 900:
        app.lifecycle.tick()
        keys = app.store.list_keys()
        done = all(k.state in (State.REVOKED, State.DESTROYED) for k in keys if k.key_id in ids)
        active = sum(1 for k in keys if k.state is State.ACTIVE)
        if done and active == n:
            assert reached.at is not None, "the log says done, but no append recorded it"
            return out_of_signer, reached.at
        time.sleep(0.02)
    raise SystemExit("emergency did not converge within 900s")


def run(label: str, n: int, policy: str, scope: Scope | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp, BindPair(Path(tmp) / "bind", zones=(ZONE,)) as bind:
        app = application(Path(tmp), bind)
        events = [
            app.onboarding.identity_event(f"d{i}.{ZONE}", policy, ZONE, f"*@d{i}.example")
            for i in range(n)
        ]
        app.ctx.recorder.append(events)
        standby = n if policy.endswith("standby") else 0
        setup = settle(app, n, standby)
        sig_s, total = emergency(app, scope or Scope(domain=f"d0.{ZONE}"), n)
        print(
            f"{label:<42} setup {setup:6.1f}s   out of signer {sig_s * 1000:7.1f} ms   "
            f"revoked everywhere + replacements active {total:6.2f}s"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--domains", type=int, default=1000)
    args = ap.parse_args()
    configure("json", level=logging.ERROR, stream=io.StringIO())
    run("1 domain, standby key (rsa2048)", 1, "rsa-standby")
    run("1 domain, no standby (rsa2048)", 1, "rsa")
    run(f"{args.domains} domains --all (ed25519)", args.domains, "ed", Scope(everything=True))
    run(f"{args.domains} domains --all (rsa2048)", args.domains, "rsa", Scope(everything=True))


if __name__ == "__main__":
    main()
