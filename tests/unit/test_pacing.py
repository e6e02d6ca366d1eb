"""The shipped policy with a customer base: scheduled rotations are spread over the
policy's window (each identity at its own moment, the same after a restart) and paced to
the safety share, so a monthly routine never waits for an operator; work the spread does
not explain is still held.

The policy is policies/default.toml as shipped (cron, spread, drain, retry) with only its
[key] section made Ed25519: a thousand RSA-2048 keys a month would take minutes to make,
and the algorithm plays no part in when keys are due."""

from __future__ import annotations

import tomllib
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rotator.config.cron import cron_schedule
from rotator.domain import events as ev
from rotator.domain.errors import PolicyError
from rotator.domain.policy import Policy, parse_policy
from rotator.domain.schedule import spread_offset
from rotator.ports import LogFilter

from .conftest import MakeEnv, UnitEnv

ROOT = Path(__file__).resolve().parents[2]
N = 1000
START = datetime(2026, 1, 14, 9, 0, tzinfo=UTC)
HOUR = 3600


def shipped(**rotation: object) -> Policy:
    """policies/default.toml, its keys Ed25519 for speed, its [rotation] edited if asked."""
    path = ROOT / "policies" / "default.toml"
    data: dict[str, Any] = tomllib.loads(path.read_text())
    data["key"] = {"algorithm": "ed25519"}
    data["record"]["hashes"] = ["sha256"]
    for k, v in rotation.items():
        if v is None:
            data["rotation"].pop(k, None)
        else:
            data["rotation"][k] = v
    return parse_policy("default", data, str(path), cron_schedule)


def customers(env: UnitEnv, n: int = N) -> list[str]:
    env.ctx.safety_max_share, env.ctx.safety_min_keys = 0.25, 10  # the shipped [safety]
    names = [f"c{i:04d}.example" for i in range(n)]
    for name in names:
        env.app.onboarding.add_identity(name, "default")
    env.app.lifecycle.tick()
    assert env.store.count_keys("active") == n
    return names


def run(env: UnitEnv, until: datetime, step: float = HOUR) -> list[tuple[int, int]]:
    """Tick every `step` until `until`: (replacements, revocations) started by each tick."""
    out = []
    while env.clock.now() < until:
        env.clock.advance(step)
        out.append(tick(env))
    return out


def tick(env: UnitEnv) -> tuple[int, int]:
    head = env.store.head()
    after = head[0] if head else 0
    env.app.lifecycle.tick()
    new = [s.event for s in env.store.events(LogFilter(after_position=after))]
    replaced = sum(isinstance(e, ev.KeyGenerated) for e in new)
    revoked = sum(isinstance(e, ev.RevocationPublished) for e in new)
    return replaced, revoked


def replacements(env: UnitEnv, since: datetime, until: datetime) -> Counter[str]:
    """How often each identity's key was replaced (a key activated after another)."""
    flt = LogFilter(types=("KeyActivated",), since=since, until=until)
    return Counter(
        s.event.identity
        for s in env.store.events(flt)
        if isinstance(s.event, ev.KeyActivated) and s.event.previous
    )


def restart(env: UnitEnv, policy: Policy) -> UnitEnv:
    """A new Application on the same store and key files (the old one's memory is gone),
    with the policy as its file now reads: policies are read at start-up."""
    now = env.clock.now()
    env.store.close()
    again = UnitEnv(env.tmp, {"default": policy})
    again.clock.t = now
    again.ctx.safety_max_share = env.ctx.safety_max_share
    again.ctx.safety_min_keys = env.ctx.safety_min_keys
    return again


def stops(env: UnitEnv) -> list[ev.Event]:
    return [s.event for s in env.store.events(LogFilter(types=("SafetyStopped",)))]


@pytest.fixture
def env(make_env: MakeEnv) -> UnitEnv:
    env = make_env({"default": shipped()})
    env.clock.t = START
    return env


def test_the_shipped_policy_spreads_each_identity_over_a_week() -> None:
    policy = shipped()
    assert policy.spread == timedelta(days=7)
    fire = datetime(2026, 2, 1, 3, 0, tzinfo=UTC)
    moments = [policy.rotate_at(START, f"c{i:04d}.example") for i in range(N)]
    assert all(fire <= m < fire + timedelta(days=7) for m in moments)
    per_hour = Counter(int((m - fire).total_seconds()) // HOUR for m in moments)
    assert max(per_hour.values()) < 25  # about 6 an hour over 168 hours, never a spike


def test_a_thousand_identities_rotate_every_month_without_an_operator(env: UnitEnv) -> None:
    names = customers(env)
    limit = env.app.safety.limit()
    assert limit == 250
    feb, mar, apr = (datetime(2026, m, 1, 3, 0, tzinfo=UTC) for m in (2, 3, 4))
    for name in names:  # each identity's own moment in the week after the cron's
        ident = env.store.identity(name)
        assert ident is not None
        assert ident.rotation_due_at == feb + spread_offset(name, timedelta(days=7))

    per_tick = run(env, datetime(2026, 2, 20, tzinfo=UTC))
    assert replacements(env, feb, mar) == Counter(names)  # every identity, once

    env = restart(env, shipped())
    for name in names:  # the same moment in the month after: nothing random, nothing lost
        ident = env.store.identity(name)
        assert ident is not None
        assert ident.rotation_due_at == mar + spread_offset(name, timedelta(days=7))

    # the daemon is down for the first three days of March's window: a backlog of about
    # 430 rotations, more than the share; it is paced, not held
    per_tick += run(env, datetime(2026, 2, 28, 23, 0, tzinfo=UTC))
    env.clock.t = datetime(2026, 3, 4, 3, 0, tzinfo=UTC)
    first = tick(env)
    assert first[0] == limit
    assert "paced:" in (env.app.safety.held() or "")
    # the daemon wakes when the hour's share frees up, not at once for nothing
    assert env.app.lifecycle.next_due() == datetime(2026, 3, 4, 4, 0, tzinfo=UTC)
    per_tick.append(first)
    per_tick += run(env, datetime(2026, 3, 4, 3, 50, tzinfo=UTC), step=600)
    per_tick += run(env, datetime(2026, 4, 1, tzinfo=UTC))
    assert replacements(env, mar, apr) == Counter(names)

    assert stops(env) == []  # no operator action, ever
    assert max(r for r, _ in per_tick) <= limit
    assert max(v for _, v in per_tick) <= limit
    assert sum(v for _, v in per_tick) >= N  # February's old keys were revoked, paced too
    assert env.app.safety.held() is None
    env.store.close()


def test_an_interval_cut_below_the_spread_is_refused_at_start_up() -> None:
    monthly = shipped(cron=None, interval="30d")
    assert monthly.spread == timedelta(days=7)
    with pytest.raises(PolicyError, match=r"\[rotation\].spread: 7d is not shorter than"):
        shipped(cron=None, interval="1h")  # the typo: "1h" for "30d", the spread kept


def test_an_interval_edited_from_30d_to_1h_is_paced_then_held(env: UnitEnv) -> None:
    """With a spread it allows, the edit is not refused: the keys of 30 days rotate at their
    moments, then every hour. The share per hour paces that, visibly; once work waits longer
    than its spread the schedule no longer explains it and the valve holds it."""
    # a day's spread (not the shipped week) so that the edit shows within simulated hours
    env.policies["default"] = shipped(cron=None, interval="30d", spread="1d")
    names = customers(env, 200)
    limit = env.app.safety.limit()
    assert limit == 50
    env = restart(env, shipped(cron=None, interval="1h", spread="30m"))
    env.clock.t = START + timedelta(days=30)
    paced, per_tick = False, []
    while not stops(env) and env.clock.now() < START + timedelta(days=33):
        per_tick += run(env, env.clock.now() + timedelta(hours=1), step=900)
        paced = paced or "paced:" in (env.app.safety.held() or "")
    (stop,) = stops(env)
    assert paced  # first paced, visibly
    assert isinstance(stop, ev.SafetyStopped)
    assert "not explained by a spread schedule" in stop.reason
    assert "safety stop" in (env.app.safety.held() or "")
    assert env.clock.now() < START + timedelta(days=32)  # within a day of the first 1h key
    # per hour, never more than the share: one hour's ticks together
    hours = [sum(r + v for r, v in per_tick[i : i + 4]) for i in range(0, len(per_tick), 4)]
    assert max(hours) <= limit
    # held: nothing scheduled goes on until an operator looks
    before = len(replacements(env, START, env.clock.now() + timedelta(days=1)))
    run(env, env.clock.now() + timedelta(hours=3), step=900)
    assert len(replacements(env, START, env.clock.now())) == before
    assert len(names) == 200
    env.store.close()
