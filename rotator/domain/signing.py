"""Which events change what the signers hold, derived from the key state machine: the SQL
of a store asks for these names, it does not define them."""

from __future__ import annotations

from typing import Any

from .events import Event, IdentityAdded, IdentityRemoved
from .machine import TRANSITIONS
from .states import State

# An identity coming (an ESP customer carries the ESP's signature at once) or going changes
# the senders a key signs for.
_SENDERS: tuple[type[Event], ...] = (IdentityAdded, IdentityRemoved)

# The states in which a signer may hold a key: it signs (active), or its files stay for the
# drain window.
HELD = frozenset({State.ACTIVE.value, State.DRAINING.value})


def _sources(transition: dict[str, Any]) -> list[str]:
    source = transition["source"]
    return [source] if isinstance(source, str) else list(source)


def _triggers(moves: Any) -> tuple[str, ...]:
    # in the machine's order, each trigger once
    return tuple(dict.fromkeys(t["trigger"] for t in TRANSITIONS if t["dest"] and moves(t)))


# A key becomes active or stops being active (DrainStarted, KeyCompromised: the only ways
# out): the signing set (which keys sign for which senders) may differ. Revocations and
# destructions concern keys that no longer sign.
SIGNING_SET_EVENTS: tuple[str, ...] = (
    *_triggers(lambda t: (t["dest"] == State.ACTIVE.value) != (State.ACTIVE.value in _sources(t))),
    *(cls.__name__ for cls in _SENDERS),
)

# A key enters or leaves a state the signers hold it in: what they hold may differ.
SIGNING_EVENTS: tuple[str, ...] = (
    *_triggers(lambda t: t["dest"] in HELD or not HELD.isdisjoint(_sources(t))),
    *(cls.__name__ for cls in _SENDERS),
)
