"""The events that change what the signers hold are the domain's, derived from the state
machine; the store's SQL only asks for them."""

from __future__ import annotations

from rotator.adapters.store import log_reads
from rotator.domain import events as ev
from rotator.domain import signing


def test_the_signing_events_are_derived_from_the_machine_as_listed_before() -> None:
    assert set(signing.SIGNING_EVENTS) == {
        "KeyActivated",
        "DrainStarted",
        "KeyCompromised",
        "KeyWithdrawn",
        "IdentityAdded",
        "IdentityRemoved",
        "KeyRevoked",
        "KeyDestroyed",
    }
    assert set(signing.SIGNING_SET_EVENTS) == {
        "KeyActivated",
        "DrainStarted",
        "KeyCompromised",
        "IdentityAdded",
        "IdentityRemoved",
    }
    assert len(set(signing.SIGNING_EVENTS)) == len(signing.SIGNING_EVENTS)


def test_every_signing_event_is_an_event_type() -> None:
    assert set(signing.SIGNING_EVENTS) <= set(ev.EVENT_TYPES)


def test_the_store_asks_for_the_domains_lists() -> None:
    assert log_reads.SIGNING_EVENTS is signing.SIGNING_EVENTS
    assert log_reads.SET_EVENTS is signing.SIGNING_SET_EVENTS
