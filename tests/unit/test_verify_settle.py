"""Verification within a tick: a secondary that is catching up (each look finds more
records served, or its SOA serial is behind another server's: a transfer still to come) is
looked at again past the first 0.2 s, up to 1 s, so the keys are verified in that tick; one
that makes no progress at the same serial is left for a later look after 0.2 s."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from rotator.domain.states import State

from .conftest import UnitEnv
from .test_service import lag_secondary

DOMAINS = [f"d{i}.example.com" for i in range(9)]


def onboard_lagging(env: UnitEnv) -> None:
    for d in DOMAINS:
        env.app.onboarding.add_identity(d, "demo")
    lag_secondary(env)


def test_a_secondary_catching_up_is_waited_for_in_the_tick(env: UnitEnv) -> None:
    onboard_lagging(env)
    real = env.dns.observe_many

    def catching_up(queries: Sequence[tuple[str, str]], deadline: Any = None) -> Any:
        if env.dns.lagging:  # one more record reaches the secondary before each look
            env.dns.lagging.pop()
        return real(queries, deadline)

    env.dns.observe_many = catching_up  # type: ignore[method-assign]
    started = time.monotonic()
    env.app.lifecycle.tick()
    took = time.monotonic() - started
    # 9 looks 50 ms apart: past the 0.2 s grace, within the 1 s bound
    assert {k.state for k in env.store.list_keys()} == {State.ACTIVE}
    assert env.app.lifecycle.verifying.next_checks() == {}
    assert 0.3 < took < 1.5


def test_a_secondary_making_no_progress_is_looked_at_later(env: UnitEnv) -> None:
    onboard_lagging(env)
    started = time.monotonic()
    env.app.lifecycle.tick()
    took = time.monotonic() - started
    assert {k.state for k in env.store.list_keys()} == {State.PUBLISHED}
    assert len(env.app.lifecycle.verifying.next_checks()) == len(DOMAINS)
    assert took < 0.8  # the 0.2 s grace, not the 1 s bound


def test_a_secondary_behind_on_the_serial_is_waited_for_until_its_transfer(env: UnitEnv) -> None:
    """Nothing reaches the secondary for 0.5 s, then everything at once (one IXFR): its
    older serial says a transfer is to come, so the tick waits for it."""
    onboard_lagging(env)
    env.dns.serial_lag = True
    real = env.dns.observe_many
    started = time.monotonic()

    def one_transfer(queries: Sequence[tuple[str, str]], deadline: Any = None) -> Any:
        if time.monotonic() - started > 0.5:
            env.dns.lagging.clear()
        return real(queries, deadline)

    env.dns.observe_many = one_transfer  # type: ignore[method-assign]
    env.app.lifecycle.tick()
    took = time.monotonic() - started
    assert {k.state for k in env.store.list_keys()} == {State.ACTIVE}
    assert env.app.lifecycle.verifying.next_checks() == {}
    assert 0.5 < took < 1.5


def test_a_secondary_behind_on_the_serial_is_waited_for_at_most_the_bound(env: UnitEnv) -> None:
    onboard_lagging(env)
    env.dns.serial_lag = True
    started = time.monotonic()
    env.app.lifecycle.tick()
    took = time.monotonic() - started
    assert {k.state for k in env.store.list_keys()} == {State.PUBLISHED}
    assert len(env.app.lifecycle.verifying.next_checks()) == len(DOMAINS)
    assert 1.0 <= took < 2.0  # the 1 s bound, then a later look
