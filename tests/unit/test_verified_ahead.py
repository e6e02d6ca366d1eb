"""A key verified in a tick whose activation is due at once goes straight into the signer:
its KeyVerified is recorded in the same append as its KeyActivated, in the log's usual
order. A key that is not activated then (the signer fails, the key moved meanwhile) keeps
its verification in the log, recorded before the activation's failure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rotator.domain import events as ev
from rotator.domain.states import State
from rotator.ports import LogFilter

from .conftest import UnitEnv
from .test_service import lag_secondary

DOMAINS = [f"d{i}.example.com" for i in range(3)]


def appends_of(env: UnitEnv) -> list[list[str]]:
    """The event types of each append the store takes from now on."""
    seen: list[list[str]] = []
    real = env.store.append

    def append(events: Sequence[ev.Event], expected: dict[str, int]) -> Any:
        seen.append([type(e).__name__ for e in events])
        return real(events, expected)

    env.store.append = append  # type: ignore[method-assign]
    return seen


def onboard_published(env: UnitEnv) -> None:
    """Every key published and not yet served by the secondary; then it catches up, and
    the next tick verifies."""
    for d in DOMAINS:
        env.app.onboarding.add_identity(d, "demo")
    lag_secondary(env)
    env.app.lifecycle.tick()
    assert {k.state for k in env.store.list_keys()} == {State.PUBLISHED}
    env.dns.lagging.clear()
    env.clock.advance(5)


def types_in_log(env: UnitEnv, key_id: str) -> list[str]:
    return [type(s.event).__name__ for s in env.store.events(LogFilter(key_id=key_id))]


def test_verification_and_activation_land_in_one_append(env: UnitEnv) -> None:
    onboard_published(env)
    appends = appends_of(env)
    env.app.lifecycle.tick()
    assert {k.state for k in env.store.list_keys()} == {State.ACTIVE}
    joined = [a for a in appends if "KeyVerified" in a]
    assert joined == [["KeyVerified", "KeyActivated"] * len(DOMAINS)]
    for key in env.store.list_keys():
        kinds = types_in_log(env, key.key_id)
        assert kinds.index("KeyVerified") + 1 == kinds.index("KeyActivated")


def test_a_signer_that_fails_leaves_the_verification_recorded_before_its_failure(
    env: UnitEnv,
) -> None:
    onboard_published(env)
    env.signer.fail = "reload failed"
    env.app.lifecycle.tick()
    for key in env.store.list_keys():
        assert key.state is State.VERIFIED
        assert key.last_error is not None and "reload failed" in key.last_error
        kinds = types_in_log(env, key.key_id)
        assert kinds[-2:] == ["KeyVerified", "ActionFailed"]
    env.signer.fail = None
    env.clock.advance(600)
    env.app.lifecycle.tick()
    assert {k.state for k in env.store.list_keys()} == {State.ACTIVE}


def test_a_key_compromised_between_its_look_and_the_signer_is_not_activated(
    env: UnitEnv,
) -> None:
    onboard_published(env)
    victim = env.store.list_keys()[0]
    real = env.dns.observe_many

    def look(queries: Any, deadline: Any = None) -> Any:
        found = real(queries, deadline)
        now = env.store.key(victim.key_id)
        if now is not None and now.state is State.PUBLISHED and not now.compromised:
            # an operator's command recording in between (another process)
            compromised = ev.KeyCompromised(
                at=env.clock.now(),
                key_id=now.key_id,
                identity=now.identity,
                domain=now.domain,
                selector=now.selector,
                actor="ops",
                reason="leaked",
                scope="selector",
                emergency=True,
            )
            env.ctx.recorder.append([compromised], [now])
        return found

    env.dns.observe_many = look  # type: ignore[method-assign]
    env.app.lifecycle.tick()
    victim_now = env.store.key(victim.key_id)
    assert victim_now is not None and victim_now.state is not State.ACTIVE
    assert "KeyVerified" not in types_in_log(env, victim.key_id)
    assert victim.key_id not in {e.key_id for e in env.signer.entries}
    others = [k for k in env.store.list_keys() if k.identity != victim.identity]
    assert len(others) == len(DOMAINS) - 1
    assert {k.state for k in others} == {State.ACTIVE}


def test_a_busy_signer_lock_leaves_the_verification_recorded(env: UnitEnv) -> None:
    onboard_published(env)
    env.signer.busy = "held by pid 1234 (rotator emergency)"
    looks = len(env.dns.batches)
    env.app.lifecycle.tick()
    for key in env.store.list_keys():
        assert key.state is State.VERIFIED
        assert "KeyVerified" in types_in_log(env, key.key_id)
    failed = [s.event for s in env.store.events(LogFilter(types=("ActionFailed",)))]
    assert failed and {f.action for f in failed} == {"activate"}  # type: ignore[attr-defined]
    # the keys were not looked at again one by one
    assert len(env.dns.batches) == looks + 1
    env.signer.busy = None
    env.clock.advance(600)
    env.app.lifecycle.tick()
    assert {k.state for k in env.store.list_keys()} == {State.ACTIVE}
