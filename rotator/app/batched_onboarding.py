"""Onboarding requests that arrive together (the API's concurrent POST /v1/customers)
recorded in one transaction: one commit, and its fsyncs, for many customers. Each request
still gets the answer it would have had alone: its own error, or its identity."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..domain import events as ev
from ..domain.errors import InputError, RotatorError
from ..domain.model import IdentityState
from ..domain.names import pattern_domain
from .onboarding import CustomerRow, Onboarding


@dataclass(frozen=True)
class Request:
    row: CustomerRow
    actor: str
    reason: str


Outcome = IdentityState | RotatorError


class BatchedOnboarding:
    def __init__(self, onboarding: Onboarding) -> None:
        self.onboarding = onboarding

    def add_each(self, requests: Sequence[Request]) -> list[Outcome]:
        """In order, as if each were sent alone after the ones before it: a request that
        names a domain an earlier one of the batch takes waits for the next round (then
        it is "already managed", as it would be alone)."""
        outcomes: dict[int, Outcome] = {}
        todo = list(range(len(requests)))
        while todo:
            wave: list[int] = []
            events: list[ev.IdentityAdded] = []
            later: list[int] = []
            taken: set[str] = set()
            for i in todo:
                req = requests[i]
                try:
                    event = self.onboarding.customer_event(req.row, req.actor, req.reason)
                except RotatorError as exc:  # worded as add_customers words it
                    outcomes[i] = InputError(f"{req.row.where}: {exc}")
                    continue
                names = {event.identity, pattern_domain(event.signing_pattern)}
                if names & taken:
                    later.append(i)
                    continue
                taken |= names
                wave.append(i)
                events.append(event)
            if wave:
                self._record(requests, wave, events, outcomes)
            todo = later
        return [outcomes[i] for i in range(len(requests))]

    def _record(
        self,
        requests: Sequence[Request],
        wave: list[int],
        events: list[ev.IdentityAdded],
        outcomes: dict[int, Outcome],
    ) -> None:
        try:
            added = self.onboarding.add_events(events)
        except RotatorError as exc:
            if len(wave) == 1:
                outcomes[wave[0]] = exc
                return
            # what the batch as a whole hit (a signer limit, say): nothing of it was
            # recorded, and each goes again alone, for the answer it would have had
            for i in wave:
                req = requests[i]
                try:
                    (outcomes[i],) = self.onboarding.add_customers([req.row], req.actor, req.reason)
                except RotatorError as one:
                    outcomes[i] = one
        else:
            outcomes.update(zip(wave, added, strict=True))
