"""A new identity's zone is checked with its DNS backend before anything is recorded: a
backend that answers that it does not serve the zone refuses the identity with its one
line; one that cannot be asked lets it in with a warning. An answer, or a failure to get
one, is reused for a minute (the API onboards many customers into the same few zones)."""

from __future__ import annotations

import pytest

from rotator.app import CustomerRow
from rotator.domain.errors import InputError
from rotator.domain.states import Mode

from .conftest import UnitEnv

ZONE = "cname.esp-dkim.net"
REFUSED = f"the primary 127.0.0.1:53 answers REFUSED for zone {ZONE}: add the zone there"


def row(domain: str, zone: str = ZONE, mode: str = "cname") -> CustomerRow:
    return CustomerRow("acme", domain, mode, "demo", zone=zone)


def test_a_zone_the_backend_says_it_does_not_serve_refuses_the_identity(env: UnitEnv) -> None:
    env.dns.zone_problems[ZONE] = REFUSED
    before = env.store.head()
    with pytest.raises(InputError) as err:
        env.app.onboarding.add_customers([row("a.example")])
    assert str(err.value) == f"domain a.example: {REFUSED}"
    assert env.store.head() == before and env.store.identity("a.example") is None


def test_a_zone_whose_backend_cannot_be_asked_is_a_warning(env: UnitEnv) -> None:
    env.dns.zone_unanswered[ZONE] = "the primary 127.0.0.1:53 did not answer a SOA query"
    (ident,) = env.app.onboarding.add_customers([row("a.example")])
    assert env.store.identity("a.example") is not None
    (warning,) = env.app.onboarding.zone_problems([ident])
    assert warning.startswith("the primary 127.0.0.1:53 did not answer a SOA query: its keys wait")
    # the failure is remembered for a minute (the API asks under its lock: a backend that
    # does not answer must not hold every request for its timeout), then asked again, and
    # the answer clears it
    del env.dns.zone_unanswered[ZONE]
    asked = len(env.dns.zone_asks)
    (other,) = env.app.onboarding.add_customers([row("b.example")])
    assert len(env.dns.zone_asks) == asked
    assert len(env.app.onboarding.zone_problems([other])) == 1
    env.clock.advance(61)
    (third,) = env.app.onboarding.add_customers([row("c.example")])
    assert len(env.dns.zone_asks) == asked + 1
    assert env.app.onboarding.zone_problems([ident, other, third]) == []


def test_an_answer_is_reused_for_a_minute(env: UnitEnv) -> None:
    env.app.onboarding.add_customers([row("a.example")])
    env.dns.zone_problems[ZONE] = REFUSED  # the zone is removed from the primary
    env.app.onboarding.add_customers([row("b.example")])  # within the minute: not asked
    env.clock.advance(61)
    with pytest.raises(InputError, match="answers REFUSED"):
        env.app.onboarding.add_customers([row("c.example")])


def test_an_import_is_refused_whole_for_one_unserved_zone(env: UnitEnv) -> None:
    # NS-delegated customers each bring a zone of their own: all are asked, several at once
    rows = [row(f"d{i}.example", zone="", mode="ns-delegation") for i in range(40)]
    env.dns.zone_problems["myesp._domainkey.d17.example"] = "no such zone"
    before = env.store.head()
    with pytest.raises(InputError, match=r"^domain d17\.example: no such zone$"):
        env.app.onboarding.add_customers(rows)
    assert env.store.head() == before
    assert len(set(env.dns.zone_asks)) == 40


def test_a_move_to_a_zone_the_backend_does_not_serve_is_refused(env: UnitEnv) -> None:
    env.app.onboarding.add_customers([row("a.example")])
    env.dns.zone_problems["myesp._domainkey.a.example"] = "no such zone"
    before = env.store.head()
    with pytest.raises(InputError, match=r"^domain a\.example: no such zone$"):
        env.app.changes.set_mode("a.example", Mode.NS_DELEGATION, None, False, "op", "")
    assert env.store.head() == before
