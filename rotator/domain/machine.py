"""The key lifecycle as a `transitions` state machine: the gatekeeper for every key event.

The machine only decides whether an event may apply; it performs no I/O (pytransitions does
not roll back a transition when a callback raises, so side effects stay in service.py).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from transitions import Machine, MachineError

from .errors import IllegalTransition
from .states import State

ALL = [s.value for s in State]

# trigger name -> event type that fires it. Internal transitions (dest None) record a fact
# without changing state; conditions are guards on the key's flags.
TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "KeyPublished", "source": "generated", "dest": "published"},
    {"trigger": "KeyVerified", "source": "published", "dest": "verified"},
    {"trigger": "KeyActivated", "source": "verified", "dest": "active"},
    {"trigger": "DrainStarted", "source": "active", "dest": "draining"},
    # Emergency: out of service at once, revoked without waiting for the drain window.
    {
        "trigger": "KeyCompromised",
        "source": ["generated", "published", "verified", "active", "draining"],
        "dest": "draining",
    },
    # A key that never signed is given up: nothing in flight, so no drain window either.
    {
        "trigger": "KeyWithdrawn",
        "source": ["generated", "published", "verified"],
        "dest": "draining",
    },
    {"trigger": "ActivationRequested", "source": "verified", "dest": None},
    {
        "trigger": "RevocationPublished",
        "source": "draining",
        "dest": None,
        "unless": "revocation_published",
    },
    {
        "trigger": "KeyRevoked",
        "source": "draining",
        "dest": "revoked",
        "conditions": "revocation_published",
    },
    {"trigger": "KeyDestroyed", "source": "revoked", "dest": "destroyed"},
    # A customer-managed key is never revoked by rotator (the DNS is the customer's): after
    # its drain window only rotator's copy of the private key is destroyed.
    {
        "trigger": "KeyDestroyed",
        "source": "draining",
        "dest": "destroyed",
        "conditions": "customer_managed",
    },
    {
        "trigger": "TombstoneRemoved",
        "source": "destroyed",
        "dest": None,
        "unless": "tombstone_removed",
    },
    # A failed side effect is recorded in any live state and never moves the key; so is
    # parking a step that keeps failing, and resuming it.
    {"trigger": "ActionFailed", "source": ALL, "dest": None, "unless": "tombstone_removed"},
    {"trigger": "StepParked", "source": ALL, "dest": None, "unless": "tombstone_removed"},
    {"trigger": "StepResumed", "source": ALL, "dest": None, "conditions": "parked"},
    # Watching what the nameservers serve for keys that sign or drain.
    {"trigger": "DriftDetected", "source": ["active", "draining"], "dest": None},
    {"trigger": "DriftResolved", "source": ["active", "draining", "revoked"], "dest": None},
]


class _Gate:
    """Minimal model the machine mutates; carries the flags that guards read."""

    state: str

    def __init__(
        self,
        revocation_published: bool,
        tombstone_removed: bool,
        customer_managed: bool,
        parked: bool = False,
    ) -> None:
        self.revocation_published = revocation_published
        self.tombstone_removed = tombstone_removed
        self.customer_managed = customer_managed
        self.parked = parked


# One machine, models added per check: building a Machine per event costs ~0.2 ms, which
# dominates a projection rebuild over a large log.
_LOCK = threading.Lock()
_MACHINE = Machine(
    model=None,
    states=ALL,
    transitions=TRANSITIONS,
    initial=State.GENERATED.value,
    auto_transitions=False,
    ignore_invalid_triggers=False,
)


def check_transition(
    key_id: str,
    state: State,
    event_type: str,
    *,
    revocation_published: bool = False,
    tombstone_removed: bool = False,
    customer_managed: bool = False,
    parked: bool = False,
) -> State:
    """Return the state after `event_type`, or raise IllegalTransition (nothing recorded)."""
    after = _verdict(
        state, event_type, revocation_published, tombstone_removed, customer_managed, parked
    )
    if after is None:
        raise IllegalTransition(
            f"key {key_id}: {event_type} is not allowed in state {state.value}"
            f"{_why(state, event_type, revocation_published, tombstone_removed)}"
        )
    return after


@functools.cache
def _verdict(
    state: State,
    event_type: str,
    revocation_published: bool,
    tombstone_removed: bool,
    customer_managed: bool,
    parked: bool,
) -> State | None:
    # The machine's answer depends on nothing but these (a few hundred combinations): ask
    # it once per combination. Adding a model costs ~0.1 ms, which would dominate a fold
    # over millions of events.
    gate = _Gate(revocation_published, tombstone_removed, customer_managed, parked)
    event = _MACHINE.events.get(event_type)
    if event is None:
        return None
    with _LOCK:
        _MACHINE.add_model(gate, initial=state.value)
        try:
            ok = bool(event.trigger(gate))
        except MachineError:
            ok = False
        finally:
            _MACHINE.remove_model(gate)
    return State(gate.state) if ok else None


def _why(state: State, event_type: str, revocation_published: bool, tombstone: bool) -> str:
    if event_type == "KeyRevoked" and state is State.DRAINING and not revocation_published:
        return " before the revocation record was published"
    if event_type == "RevocationPublished" and revocation_published:
        return " (the revocation record is already published)"
    if tombstone:
        return " (the key's lifecycle is over)"
    return ""
