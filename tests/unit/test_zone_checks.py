"""The primary's answer about a zone (does it serve it?) may be reused for a while by the
API, which onboards many customers into the same few zones; a command asks every time."""

from __future__ import annotations

from datetime import timedelta

from rotator.app import CustomerRow

from .conftest import UnitEnv


def test_zone_checks_may_be_reused_for_a_while(env: UnitEnv) -> None:
    row = CustomerRow("acme", "a.example", "cname", "demo", zone="cname.esp-dkim.net")
    (ident,) = env.app.onboarding.add_customers([row])
    env.dns.zone_problems["cname.esp-dkim.net"] = "the primary does not serve it"
    minute = timedelta(minutes=1)
    assert env.app.onboarding.zone_problems([ident]) == ["the primary does not serve it"]
    del env.dns.zone_problems["cname.esp-dkim.net"]
    # the API's warnings: the primary's answer of up to a minute ago
    assert env.app.onboarding.zone_problems([ident], max_age=minute) == [
        "the primary does not serve it"
    ]
    env.clock.advance(61)
    assert env.app.onboarding.zone_problems([ident], max_age=minute) == []
    # a command asks every time
    env.dns.zone_problems["cname.esp-dkim.net"] = "gone again"
    assert env.app.onboarding.zone_problems([ident]) == ["gone again"]
