"""Verification within a tick: a secondary that is catching up (each look finds more
records served, or its SOA serial is behind another server's: a transfer still to come) is
looked at again past the first 0.2 s, up to 1 s, so the keys are verified in that tick; one
that makes no progress at the same serial is left for a later look after 0.2 s."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from rotator.domain.states import State

from .conftest import UnitEnv
from .test_service import lag_secondary

DOMAINS = [f"d{i}.example.com" for i in range(9)]


def onboard_lagging(env: UnitEnv) -> None:
    for d in DOMAINS:
        env.app.onboarding.add_identity(d, "demo")
    lag_secondary(env)


def before_each_look(env: UnitEnv, change: Callable[[], None]) -> None:
    """`change` the fake's servers just before each look of verification."""
    real = env.dns.observe_many

    def look(queries: Sequence[tuple[str, str]], deadline: Any = None) -> Any:
        change()
        return real(queries, deadline)

    env.dns.observe_many = look  # type: ignore[method-assign]


def timed_tick(env: UnitEnv) -> float:
    started = time.monotonic()
    env.app.lifecycle.tick()
    return time.monotonic() - started


def assert_keys(env: UnitEnv, state: State, waiting: int) -> None:
    """Every key in `state`, `waiting` of them left for a later look."""
    assert {k.state for k in env.store.list_keys()} == {state}
    assert len(env.app.lifecycle.verifying.next_checks()) == waiting


def test_a_secondary_catching_up_is_waited_for_in_the_tick(env: UnitEnv) -> None:
    onboard_lagging(env)

    def catching_up() -> None:
        if env.dns.lagging:  # one more record reaches the secondary before each look
            env.dns.lagging.pop()

    before_each_look(env, catching_up)
    took = timed_tick(env)
    # 9 looks 50 ms apart: past the 0.2 s grace, within the 1 s bound
    assert_keys(env, State.ACTIVE, 0)
    assert 0.3 < took < 1.5


def test_a_secondary_making_no_progress_is_looked_at_later(env: UnitEnv) -> None:
    onboard_lagging(env)
    took = timed_tick(env)
    assert_keys(env, State.PUBLISHED, len(DOMAINS))
    assert took < 0.8  # the 0.2 s grace, not the 1 s bound


def test_a_secondary_behind_on_the_serial_is_waited_for_until_its_transfer(env: UnitEnv) -> None:
    """Nothing reaches the secondary for 0.5 s, then everything at once (one IXFR): its
    older serial says a transfer is to come, so the tick waits for it."""
    onboard_lagging(env)
    env.dns.serial_lag = True
    started = time.monotonic()

    def one_transfer() -> None:
        if time.monotonic() - started > 0.5:
            env.dns.lagging.clear()

    before_each_look(env, one_transfer)
    took = timed_tick(env)
    assert_keys(env, State.ACTIVE, 0)
    assert 0.5 < took < 1.5


def test_a_secondary_behind_on_the_serial_is_waited_for_at_most_the_bound(env: UnitEnv) -> None:
    onboard_lagging(env)
    env.dns.serial_lag = True
    took = timed_tick(env)
    assert_keys(env, State.PUBLISHED, len(DOMAINS))
    assert 1.0 <= took < 2.0  # the 1 s bound, then a later look


def test_records_are_not_asked_again_while_the_secondary_is_behind_on_the_serial(
    env: UnitEnv,
) -> None:
    """While its serial says a transfer is to come, only the zone's SOA is asked (every
    10 ms); the records are asked again once the serials agree, in one look."""
    onboard_lagging(env)
    env.dns.serial_lag = True
    started = time.monotonic()
    looks: list[int] = []
    polls: list[float] = []
    real_look, real_serials = env.dns.observe_many, env.dns.serials

    def look(queries: Sequence[tuple[str, str]], deadline: Any = None) -> Any:
        looks.append(len(queries))
        return real_look(queries, deadline)

    def serials(zones: Sequence[str], deadline: Any = None) -> Any:
        polls.append(time.monotonic() - started)
        if polls[-1] > 0.3:  # the transfer
            env.dns.lagging.clear()
        return real_serials(zones, deadline)

    env.dns.observe_many = look  # type: ignore[method-assign]
    env.dns.serials = serials  # type: ignore[method-assign]
    env.app.lifecycle.tick()
    assert_keys(env, State.ACTIVE, 0)
    assert looks == [len(DOMAINS), len(DOMAINS)]  # the first look, then one after the transfer
    assert len(polls) > 10
