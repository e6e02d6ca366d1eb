"""One customer's slow DNS fails nobody else: the real probe against a DNS server on loopback
that answers the slow customers' names after 0.9 s (just under the 1 s timeout, so that no
single query fails) and every other name at once. The ESP's own servers stay in memory."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

import pytest

from rotator.adapters.dns import probe as probe_module
from rotator.adapters.dns.probe import AuthoritativeProbe
from rotator.app import CustomerRow
from rotator.app.customer_lanes import CustomerLanes
from rotator.app.recording import TickReport
from rotator.app.watch_checks import DnsVerdict
from rotator.domain import events as ev
from rotator.domain.errors import ProbeError
from rotator.domain.model import KeyState
from rotator.domain.states import State
from rotator.ports import DelegationView, Observation
from tests.support.slowdns import SlowDns

from .conftest import MakeEnv, UnitEnv
from .fakes import FakeDns

ESP_NS = ("ns1.esp.test",)
TIMEOUT = 1.0  # dns.timeout
CHECK_S = 3 * TIMEOUT  # the deadline of one customer's checks, as the daemon sets it
SLOW = [f"slow{n}.example" for n in range(36)]
HONEST = "honest.example"


class LoopbackCustomers:
    """The ESP's servers in memory; every lookup in the customers' DNS goes to loopback."""

    def __init__(self, esp: FakeDns, customers: AuthoritativeProbe) -> None:
        self.esp = esp
        self.customers = customers

    def observe(self, zone: str, name: str, deadline: float | None = None) -> list[Observation]:
        return self.esp.observe(zone, name)

    def observe_many(
        self, queries: Sequence[tuple[str, str]], deadline: float | None = None
    ) -> list[list[Observation] | ProbeError]:
        return self.esp.observe_many(queries)

    def serials(
        self, zones: Sequence[str], deadline: float | None = None
    ) -> dict[str, list[int | None]]:
        return self.esp.serials(zones)

    def cname(self, name: str, deadline: float | None = None) -> str | None:
        return self.customers.cname(name, deadline)

    def delegation(self, zone: str, deadline: float | None = None) -> DelegationView:
        return self.customers.delegation(zone, deadline)


@pytest.fixture
def server() -> Iterator[SlowDns]:
    with SlowDns(ESP_NS, SLOW, delay=0.9) as dns_server:
        yield dns_server


def probe(server: SlowDns) -> AuthoritativeProbe:
    return AuthoritativeProbe(
        port=server.port, timeout=TIMEOUT, resolver=[f"127.0.0.1:{server.port}"]
    )


@pytest.fixture
def env(make_env: MakeEnv, server: SlowDns) -> Iterator[UnitEnv]:
    env = make_env(esp_nameservers=ESP_NS)
    env.ctx.probe = LoopbackCustomers(env.dns, probe(server))
    env.ctx.customer_check_s = CHECK_S
    yield env
    # every check still running ends before the server goes away
    env.app.lifecycle.verifying.lanes.close()
    env.app.lifecycle.watch.checks.lanes.close()


def ns_row(customer: str, domain: str) -> CustomerRow:
    return CustomerRow(customer=customer, domain=domain, mode="ns-delegation", policy="demo")


def failures(env: UnitEnv, domain: str) -> list[str]:
    return [
        s.event.error
        for s in env.store.events()
        if isinstance(s.event, ev.ActionFailed | ev.StepParked) and s.event.domain == domain
    ]


def timed_tick(env: UnitEnv) -> float:
    start = time.monotonic()
    env.app.lifecycle.tick()
    return time.monotonic() - start


def test_a_slow_customer_delegation_is_cut_off_at_its_deadline(server: SlowDns) -> None:
    # zone NS, the parent's zone, its NS, their A and AAAA, the referral: six answers of
    # 0.9 s each, every one inside the timeout
    start = time.monotonic()
    view = probe(server).delegation(f"myesp._domainkey.{SLOW[0]}", start + 1.5)
    took = time.monotonic() - start
    assert took < 1.5 + 0.3, took
    assert view.error and "myesp._domainkey" not in (view.parent or "")
    fast = probe(server).delegation(f"myesp._domainkey.{HONEST}", time.monotonic() + 1.5)
    assert (fast.error, fast.parent, fast.referral) == (None, HONEST, frozenset(ESP_NS))


def test_a_call_without_a_deadline_still_has_one(server: SlowDns) -> None:
    start = time.monotonic()
    view = probe(server).delegation(f"myesp._domainkey.{SLOW[0]}")
    assert time.monotonic() - start < 3 * TIMEOUT + 0.3
    assert view.error


def test_zones_looked_up_in_turn_each_get_their_own_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Many records at once, no deadline given: the zones whose nameservers must be looked
    up go MAX_LOOKUPS at a time, each with the bound of one call, so the last ones are not
    failed for the time the first ones took (five rounds of 0.7 s, more than 3 timeouts)."""
    monkeypatch.setattr(probe_module, "MAX_LOOKUPS", 2)
    slow = [f"turn{n}.example" for n in range(10)]
    with SlowDns(("ns.esp.test",), slow, delay=0.7) as dns_server:
        queries = [(f"myesp._domainkey.{d}", f"s1.myesp._domainkey.{d}.") for d in slow]
        start = time.monotonic()
        results = probe(dns_server).observe_many(queries)
        assert time.monotonic() - start > 3 * TIMEOUT
    for result in results:
        assert not isinstance(result, ProbeError), result
        ((obs),) = result
        assert (obs.nameserver, obs.error, obs.texts) == ("ns.esp.test", None, ())


def published(env: UnitEnv, domains: list[str]) -> list[KeyState]:
    """The domains' first keys, published and waiting for their customers' DNS: one tick
    where no parent delegates anything yet (in memory, at once)."""
    probe = env.ctx.probe
    env.ctx.probe = env.dns
    env.app.lifecycle.tick()
    env.ctx.probe = probe
    keys = [env.key_of(d) for d in domains]
    assert all(k.state is State.PUBLISHED and k.attempts == 1 for k in keys)
    return keys


def test_one_customers_slow_domains_fail_no_other_customer(env: UnitEnv) -> None:
    env.app.onboarding.add_customers([*(ns_row("Slow", d) for d in SLOW), ns_row("Honest", HONEST)])
    *slow, honest = published(env, [*SLOW, HONEST])
    report = TickReport()
    start = time.monotonic()
    env.app.lifecycle.verifying.verify([*slow, honest], env.clock.now(), report)  # honest last
    assert time.monotonic() - start < 2 * CHECK_S + 1
    assert env.key(honest.key_id).attempts == 0  # verified: its failure count is cleared
    assert "KeyVerified" in env.types(honest.key_id)
    assert len(failures(env, HONEST)) == 1  # the in-memory tick's only
    # the slow customer's own checks fail, naming its own zone; the ones that got no thread
    # in time are not failures of anyone's
    failed = {d: failures(env, d)[1:] for d in SLOW}
    assert 0 < sum(map(len, failed.values())) <= 4
    for domain, errors in failed.items():
        for error in errors:
            assert error.startswith(
                f"awaiting customer DNS: cannot check the delegation of myesp._domainkey.{domain}"
            )


def test_many_slow_customers_never_fail_an_honest_one(env: UnitEnv) -> None:
    # 36 customers' checks take every thread for a while; a new customer comes after them
    env.app.onboarding.add_customers([ns_row(f"Slow {n}", d) for n, d in enumerate(SLOW)])
    env.app.lifecycle.tick()
    assert any(failures(env, d) for d in SLOW)
    env.app.onboarding.add_customers([ns_row("Honest", HONEST)])
    # The clock does not move: a slow customer whose check failed is not due again, one
    # that got no thread in time is, and so is the honest one until it is checked.
    for _ in range(3):
        env.app.lifecycle.tick()
        honest = env.key_of(HONEST)
        assert (failures(env, HONEST), honest.attempts) == ([], 0)
        if honest.state is State.ACTIVE:
            break
    assert honest.state is State.ACTIVE
    assert all(failures(env, d) for d in SLOW)  # each slow customer's own, in the end


def test_the_watch_checks_an_honest_customer_beside_a_slow_one(env: UnitEnv) -> None:
    idents = env.app.onboarding.add_customers(
        [*(ns_row("Slow", d) for d in SLOW), ns_row("Honest", HONEST)]
    )
    verdicts = env.app.lifecycle.watch.checks.identities(idents, env.clock.now())
    assert verdicts[idents[-1].identity] == DnsVerdict()  # delegated as it should be
    for ident in idents[:-1]:
        verdict = verdicts[ident.identity]
        assert verdict.problem is None and verdict.unasked  # no verdict either way


# --- the lanes themselves ------------------------------------------------------------------


def test_one_customer_holds_at_most_its_share_of_the_threads() -> None:
    lanes = CustomerLanes("t", workers=8, per_customer=2)
    lock = threading.Lock()
    running: dict[str, int] = {"big": 0, "small": 0}
    most: dict[str, int] = {"big": 0, "small": 0}

    def check(item: tuple[str, int], deadline: float) -> str:
        who = item[0]
        with lock:
            running[who] += 1
            most[who] = max(most[who], running[who])
        time.sleep(0.05 if who == "big" else 0.0)
        with lock:
            running[who] -= 1
        return who

    items = [("big", n) for n in range(12)] + [("small", 0)]
    try:
        out = lanes.run(items, lambda i: i[0], check, within=2.0)
    finally:
        lanes.close()
    assert [o.value for o in out] == [i[0] for i in items]
    assert most == {"big": 2, "small": 1}


def test_no_thread_in_time_is_no_ones_failure_running_out_is_the_customers() -> None:
    lanes = CustomerLanes("t", workers=1, per_customer=1)
    release = threading.Event()

    def check(item: str, deadline: float) -> str:
        if item == "stuck":  # ignores its deadline: only the wait ends it
            release.wait(5)
        return item

    try:
        stuck, queued = lanes.run(["stuck", "queued"], lambda i: i, check, within=0.2)
    finally:
        release.set()
        lanes.close()
    assert stuck.unchecked is not None and stuck.unchecked.late
    assert "took longer than 0.2s" in stuck.unchecked.reason
    assert queued.unchecked is not None and not queued.unchecked.late
