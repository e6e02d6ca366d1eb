"""The safety valve: a tick that would replace or revoke more than the allowed share of the
active keys holds that work, records why once, and goes ahead only after an operator's
release; commands above the limit need --yes; emergencies are never held."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from rotator.app import Scope
from rotator.domain import events as ev
from rotator.domain.errors import InputError
from rotator.domain.states import State
from rotator.ports import LogFilter

from .conftest import MakeEnv, UnitEnv
from .fakes import demo_policy


@pytest.fixture
def env(make_env: MakeEnv) -> UnitEnv:
    env = make_env({"hourly": dataclasses.replace(demo_policy(), name="hourly")})
    env.ctx.safety_max_share = 0.25
    env.ctx.safety_min_keys = 2
    for i in range(12):
        env.app.onboarding.add_identity(f"d{i}.example", "demo")
    env.app.lifecycle.tick()
    assert env.store.count_keys("active") == 12
    return env


def stops(env: UnitEnv) -> list[ev.Event]:
    return [s.event for s in env.store.events(LogFilter(types=("SafetyStopped",)))]


def test_a_tick_that_would_replace_too_many_keys_holds_them(env: UnitEnv) -> None:
    before = {k.key_id for k in env.store.list_keys(state=State.ACTIVE)}
    env.clock.advance(61)  # every key's rotation is due at once: 12 > 25% of 12
    env.app.lifecycle.tick()
    assert {k.key_id for k in env.store.list_keys(state=State.ACTIVE)} == before
    (stop,) = stops(env)
    assert (stop.what, stop.count, stop.active) == ("revoke 0 and replace 12 keys", 12, 12)  # type: ignore[attr-defined]
    env.app.lifecycle.tick()  # still held, and said once, not on every tick
    assert len(stops(env)) == 1
    assert "revoke 0 and replace 12 keys held" in (env.app.safety.held() or "")
    # first keys of new domains are not held
    env.app.onboarding.add_identity("new.example", "demo")
    env.app.lifecycle.tick()
    assert env.key_of("new.example", State.ACTIVE)
    env.app.safety.release("alice", "intended: policy change")
    env.app.lifecycle.tick()
    now_active = {k.key_id for k in env.store.list_keys(state=State.ACTIVE)}
    assert not (now_active & before)  # every key replaced after the release
    assert env.app.safety.held() is None


def test_a_release_lets_one_tick_through_then_the_valve_re_arms(env: UnitEnv) -> None:
    env.clock.advance(61)
    env.app.lifecycle.tick()
    env.app.safety.release("alice", "ok")
    env.app.lifecycle.tick()  # the backlog goes
    env.clock.advance(31)  # the 12 replaced keys' revocations: a new spike, held again
    env.app.lifecycle.tick()
    assert len(stops(env)) == 2
    assert all(k.state is State.DRAINING for k in env.store.list_keys(state=State.DRAINING))
    assert len(env.store.list_keys(state=State.DRAINING)) == 12


def test_release_without_a_stop_is_refused(env: UnitEnv) -> None:
    with pytest.raises(InputError, match="nothing is held"):
        env.app.safety.release("alice", "x")


def test_an_emergency_is_never_held(env: UnitEnv) -> None:
    plan = env.app.emergency.plan(Scope(everything=True))
    env.app.emergency.declare(plan, "carol", "all leaked")
    env.app.lifecycle.tick()
    assert stops(env) == []
    compromised = {k.key_id for k in plan.compromise}
    assert all(env.key(k).state is State.DESTROYED for k in compromised)


def test_commands_above_the_limit_need_yes(env: UnitEnv) -> None:
    with pytest.raises(InputError, match="touches 12 keys, more than the safety limit of 3"):
        env.app.safety.check_command(12, "removing everything", confirmed=False)
    env.app.safety.check_command(12, "removing everything", confirmed=True)
    env.app.safety.check_command(3, "removing a few", confirmed=False)


def test_the_limits_come_from_the_config(tmp_path: Path) -> None:
    from rotator.config.settings import load_config

    from .clirun import refused, write_config

    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text() + "\n[safety]\nmax_share = 0.1\nmin_keys = 3\n")
    config = load_config(cfg)
    assert (config.safety.max_share, config.safety.min_keys) == (0.1, 3)
    cfg.write_text(cfg.read_text().replace("max_share = 0.1", "max_share = 2"))
    line = refused(cfg, "status")
    assert "safety.max_share: 2: give a share above 0, up to 1" in line


def test_release_from_the_command_line_needs_a_stop(tmp_path: Path) -> None:
    from .clirun import ok, refused, write_config

    cfg = write_config(tmp_path)
    ok(cfg, "init")
    assert "nothing is held" in refused(cfg, "safety", "release", "--reason", "x")


@pytest.mark.parametrize("share", [0.25, 0.1, 0.33, 1.0, 0.0])
def test_the_bounded_count_decides_as_the_full_count_does(env: UnitEnv, share: float) -> None:
    # allows() counts active keys only as far as it needs: it must agree with the limit
    # computed from the full count, at every count around the edge
    env.ctx.safety_max_share = share
    limit = env.app.safety.limit()
    for count in range(0, 20):
        assert env.app.safety.allows(count) is (count <= limit), (share, count, limit)
    assert env.store.count_keys("active", up_to=5) == 5
    assert env.store.count_keys("active", up_to=50) == 12
