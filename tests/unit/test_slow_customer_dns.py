"""One customer's slow DNS fails nobody else: the real probe against a DNS server on loopback
that answers the slow customers' names after 0.9 s (just under the 1 s timeout, so that no
single query fails) and every other name at once. The ESP's own servers stay in memory."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from rotator.adapters.probe import AuthoritativeProbe
from tests.support.slowdns import SlowDns

ESP_NS = ("ns1.esp.test",)
TIMEOUT = 1.0  # dns.timeout
CHECK_S = 3 * TIMEOUT  # the deadline of one customer's checks, as the daemon sets it
SLOW = [f"slow{n}.example" for n in range(36)]
HONEST = "honest.example"


@pytest.fixture
def server() -> Iterator[SlowDns]:
    with SlowDns(ESP_NS, SLOW, delay=0.9) as dns_server:
        yield dns_server


def probe(server: SlowDns) -> AuthoritativeProbe:
    return AuthoritativeProbe(
        port=server.port, timeout=TIMEOUT, resolver=[f"127.0.0.1:{server.port}"]
    )


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
