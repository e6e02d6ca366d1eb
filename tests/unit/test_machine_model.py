"""The lifecycle gate (machine.check_transition) and the projections (model.apply_key /
apply_identity) as pure folds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rotator.domain import events as ev
from rotator.domain.errors import IllegalTransition
from rotator.domain.machine import check_transition
from rotator.domain.model import KeyState, apply_identity, apply_key
from rotator.domain.states import Action, State
from tests.support.lifecycle import LIFECYCLE_EVENTS

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
KEY = "k0001"
G, P, V, A, D, R, X = (
    State.GENERATED,
    State.PUBLISHED,
    State.VERIFIED,
    State.ACTIVE,
    State.DRAINING,
    State.REVOKED,
    State.DESTROYED,
)
KEY_EVENTS = [
    "KeyPublished",
    "KeyVerified",
    "KeyActivated",
    "DrainStarted",
    "RevocationPublished",
    "KeyRevoked",
    "KeyDestroyed",
    "TombstoneRemoved",
    "ActionFailed",
]

# Plain steps; the guarded ones (RevocationPublished, KeyRevoked) and ActionFailed are below.
STEPS: dict[tuple[State, str], State] = {
    (G, "KeyPublished"): P,
    (P, "KeyVerified"): V,
    (V, "KeyActivated"): A,
    (A, "DrainStarted"): D,
    (R, "KeyDestroyed"): X,
    (X, "TombstoneRemoved"): X,
}


def expected_next(state: State, event: str, revocation_published: bool) -> State | None:
    """The lifecycle as a table (tombstone not yet removed); None = illegal."""
    if event == "ActionFailed":
        return state
    if event == "RevocationPublished":
        return D if state is D and not revocation_published else None
    if event == "KeyRevoked":
        return R if state is D and revocation_published else None
    return STEPS.get((state, event))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# --- check_transition -----------------------------------------------------------------------


def test_happy_path_step_by_step() -> None:
    state = G
    revocation = False
    steps = list(zip(LIFECYCLE_EVENTS[1:], (P, V, A, D, D, R, X, X), strict=True))
    for event, expected in steps:
        state = check_transition(KEY, state, event, revocation_published=revocation)
        assert state is expected, event
        if event == "RevocationPublished":
            revocation = True


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("event", KEY_EVENTS)
@pytest.mark.parametrize("revocation", [False, True])
def test_transition_table_is_exactly_the_lifecycle(
    state: State, event: str, revocation: bool
) -> None:
    want = expected_next(state, event, revocation)
    if want is None:
        with pytest.raises(IllegalTransition) as info:
            check_transition(KEY, state, event, revocation_published=revocation)
        msg = str(info.value)
        assert msg.startswith(f"key {KEY}: {event} is not allowed in state {state.value}")
        assert "\n" not in msg
    else:
        assert check_transition(KEY, state, event, revocation_published=revocation) is want


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (G, "KeyActivated"),
        (G, "KeyVerified"),
        (G, "DrainStarted"),
        (P, "KeyActivated"),
        (P, "KeyPublished"),
        (V, "DrainStarted"),
        (A, "KeyActivated"),
        (A, "KeyRevoked"),
        (A, "KeyDestroyed"),
        (D, "KeyDestroyed"),
        (D, "KeyActivated"),
        (R, "KeyPublished"),
        (X, "KeyPublished"),
        (X, "KeyDestroyed"),
    ],
)
def test_illegal_steps_name_key_and_state(state: State, event: str) -> None:
    with pytest.raises(IllegalTransition) as info:
        check_transition("abc123", state, event, revocation_published=state in (R, X))
    msg = str(info.value)
    assert "abc123" in msg
    assert f"state {state.value}" in msg
    assert event in msg


def test_revoked_before_revocation_published() -> None:
    with pytest.raises(IllegalTransition) as info:
        check_transition(KEY, D, "KeyRevoked", revocation_published=False)
    assert str(info.value) == (
        f"key {KEY}: KeyRevoked is not allowed in state draining before the revocation "
        "record was published"
    )
    assert check_transition(KEY, D, "KeyRevoked", revocation_published=True) is R


def test_revocation_published_only_once() -> None:
    with pytest.raises(IllegalTransition, match="already published"):
        check_transition(KEY, D, "RevocationPublished", revocation_published=True)


@pytest.mark.parametrize("event", KEY_EVENTS)
def test_nothing_after_tombstone_removed(event: str) -> None:
    with pytest.raises(IllegalTransition) as info:
        check_transition(KEY, X, event, revocation_published=True, tombstone_removed=True)
    msg = str(info.value)
    assert msg.startswith(f"key {KEY}: {event} is not allowed in state destroyed")
    assert "lifecycle is over" in msg or "already published" in msg


@pytest.mark.parametrize("state", list(State))
def test_action_failed_keeps_state(state: State) -> None:
    assert check_transition(KEY, state, "ActionFailed") is state
    assert check_transition(KEY, state, "ActionFailed", revocation_published=True) is state


@pytest.mark.parametrize("event", ["KeyGenerated", "IdentityAdded", "Bogus", ""])
def test_non_lifecycle_event_types_are_refused(event: str) -> None:
    with pytest.raises(IllegalTransition, match=f"key {KEY}: {event} is not allowed"):
        check_transition(KEY, G, event)


# --- apply_key ------------------------------------------------------------------------------


def ids(t: float, key_id: str = KEY) -> dict[str, Any]:
    return {
        "at": at(t),
        "key_id": key_id,
        "identity": "example.com",
        "domain": "example.com",
        "selector": "nov2026.myesp",
    }


def generated(t: float = 0, key_id: str = KEY) -> ev.KeyGenerated:
    return ev.KeyGenerated(
        **ids(t, key_id),
        policy="demo",
        algorithm="ed25519",
        bits=256,
        fingerprint="ab" * 32,
        zone="example.com",
        record_name="nov2026.myesp._domainkey.example.com.",
        record="v=DKIM1; k=ed25519; p=QUJD",
        ttl=60,
    )


def failed(t: float, attempt: int, retry_in: float, action: str = "publish") -> ev.ActionFailed:
    return ev.ActionFailed(
        **ids(t), action=action, error=f"boom {attempt}", attempt=attempt, retry_at=at(t + retry_in)
    )


def lifecycle() -> list[ev.KeyEvent]:
    return [
        generated(0),
        ev.KeyPublished(**ids(1), server="ns"),
        ev.KeyVerified(**ids(2), results=(), activate_at=at(5)),
        ev.KeyActivated(**ids(5), rotate_at=at(100)),
        ev.DrainStarted(**ids(100), drain_until=at(130), successor="k0002"),
        ev.RevocationPublished(**ids(130), server="ns", record="v=DKIM1; p="),
        ev.KeyRevoked(**ids(131), results=()),
        ev.KeyDestroyed(**ids(132), tombstone_until=at(200)),
        ev.TombstoneRemoved(**ids(200), server="ns"),
    ]


def fold(events: list[ev.KeyEvent]) -> KeyState:
    key: KeyState | None = None
    for e in events:
        key = apply_key(key, e)
    assert key is not None
    return key


def test_key_generated_starts_a_key() -> None:
    key = apply_key(None, generated(0))
    assert key.state is G
    assert key.version == 1
    assert key.next_action is Action.PUBLISH and key.next_action_at == at(0)
    assert key.attempts == 0 and key.last_error is None


def test_key_generated_twice_raises() -> None:
    key = apply_key(None, generated(0))
    with pytest.raises(IllegalTransition, match=f"key {KEY} already exists"):
        apply_key(key, generated(1))


def test_event_for_unknown_key_raises() -> None:
    with pytest.raises(IllegalTransition, match="does not exist"):
        apply_key(None, ev.KeyPublished(**ids(1), server="ns"))


def test_full_fold_next_actions() -> None:
    events = lifecycle()
    expect = [
        (G, Action.PUBLISH, at(0)),
        (P, Action.VERIFY, at(1)),
        (V, Action.ACTIVATE, at(5)),
        (A, None, None),
        (D, Action.REVOKE, at(130)),
        (D, Action.VERIFY_REVOCATION, at(130)),
        (R, Action.DESTROY, at(131)),
        (X, Action.REMOVE_TOMBSTONE, at(200)),
        (X, None, None),
    ]
    key: KeyState | None = None
    for i, (event, (state, action, when)) in enumerate(zip(events, expect, strict=True)):
        key = apply_key(key, event)
        assert (key.state, key.next_action, key.next_action_at) == (state, action, when), event
        assert key.version == i + 1
    assert key is not None
    assert key.activated_at == at(5)
    assert key.drain_until == at(130)
    assert key.successor == "k0002"
    assert key.revocation_published and key.tombstone_removed
    assert key.record == "v=DKIM1; p="
    assert key.since == at(132)  # last state change; TombstoneRemoved does not move it


def test_since_only_moves_on_state_change() -> None:
    key = fold([generated(0), failed(3, 1, 10)])
    assert key.since == at(0)
    key = apply_key(key, ev.KeyPublished(**ids(7), server="ns"))
    assert key.since == at(7)


def test_action_failed_counts_and_schedules_retry() -> None:
    key = fold([generated(0), failed(1, 1, 30)])
    assert key.state is G
    assert key.next_action is Action.PUBLISH  # still owes the same step
    assert key.attempts == 1
    assert key.last_error == "boom 1"
    assert key.next_action_at == at(31)
    key = apply_key(key, failed(31, 2, 60))
    assert key.attempts == 2
    assert key.next_action_at == at(91)
    assert key.version == 3


def test_success_resets_attempts() -> None:
    key = fold([generated(0), failed(1, 1, 30), failed(31, 2, 60)])
    key = apply_key(key, ev.KeyPublished(**ids(91), server="ns"))
    assert key.attempts == 0
    assert key.last_error is None
    assert key.next_action is Action.VERIFY


def test_illegal_event_leaves_input_untouched() -> None:
    key = fold([generated(0)])
    with pytest.raises(IllegalTransition, match="state generated"):
        apply_key(key, ev.KeyActivated(**ids(1), rotate_at=at(100)))
    assert key.state is G and key.version == 1  # frozen: the fold is pure


def test_nothing_applies_after_tombstone() -> None:
    key = fold(lifecycle())
    with pytest.raises(IllegalTransition, match="lifecycle is over"):
        apply_key(key, failed(300, 1, 10, action="remove-tombstone"))


# --- apply_identity -------------------------------------------------------------------------


def added(t: float = 0) -> ev.IdentityAdded:
    return ev.IdentityAdded(
        at=at(t),
        identity="example.com",
        domain="example.com",
        zone="example.com",
        policy="demo",
        signing_pattern="*@example.com",
    )


def rotation(t: float) -> ev.RotationRequested:
    return ev.RotationRequested(
        at=at(t), identity="example.com", domain="example.com", actor="alice", reason="audit"
    )


def test_identity_rotation_due_lifecycle() -> None:
    ident = apply_identity(None, added(0))
    assert ident is not None
    assert ident.rotation_due_at == at(0)  # first key due at once
    assert ident.version == 1
    ident = apply_identity(ident, generated(1))
    assert ident is not None
    assert ident.pending_key == KEY and ident.rotation_due_at is None
    ident = apply_identity(ident, ev.KeyActivated(**ids(5), rotate_at=at(65)))
    assert ident is not None
    assert ident.active_key == KEY
    assert ident.pending_key is None
    assert ident.rotation_due_at == at(65)


def test_rotation_requested_sets_due_now() -> None:
    ident = apply_identity(None, added(0))
    ident = apply_identity(ident, generated(1))
    ident = apply_identity(ident, ev.KeyActivated(**ids(5), rotate_at=at(1000)))
    ident = apply_identity(ident, rotation(10))
    assert ident is not None
    assert ident.rotation_due_at == at(10)
    assert ident.version == 2


def test_rotation_requested_while_pending_raises() -> None:
    ident = apply_identity(None, added(0))
    ident = apply_identity(ident, generated(1))
    with pytest.raises(IllegalTransition) as info:
        apply_identity(ident, rotation(2))
    assert "already in progress" in str(info.value)
    assert KEY in str(info.value)


def test_identity_added_twice_raises() -> None:
    ident = apply_identity(None, added(0))
    with pytest.raises(IllegalTransition, match=r"identity example\.com already exists"):
        apply_identity(ident, added(1))


def test_events_for_unknown_identity_raise() -> None:
    with pytest.raises(IllegalTransition, match=r"identity example\.com does not exist"):
        apply_identity(None, rotation(1))
    with pytest.raises(IllegalTransition, match=r"identity example\.com does not exist"):
        apply_identity(None, generated(1))


def test_other_key_events_leave_identity_alone() -> None:
    ident = apply_identity(apply_identity(None, added(0)), generated(1))
    assert apply_identity(ident, ev.KeyPublished(**ids(2), server="ns")) == ident
    assert apply_identity(ident, failed(2, 1, 5)) == ident
