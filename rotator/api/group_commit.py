"""Group commit of POST /v1/customers: a request that arrives while another holds the
App (its commit waits on fsync) queues its row; the next request to get the App records
every queued row in one transaction and renders each one's answer. One commit for many
customers: the log's and the anchor's fsyncs are most of a lone create's cost."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from ..bootstrap import App, CustomerRow, OnboardingRequest
from ..domain.errors import RotatorError
from ..domain.model import IdentityState
from .views import identity_fields

# per transaction: enough to amortize the commit, little enough that the first of them
# does not wait long for the rest
MAX_BATCH = 64


@dataclass
class Waiting:
    request: OnboardingRequest
    # set under the App's lock by whoever recorded it: the identity and its view's
    # fields, or the error this request alone would have met
    added: tuple[IdentityState, dict[str, Any]] | None = None
    error: BaseException | None = None


class GroupCommit:
    def __init__(self, app: App, app_lock: threading.Lock) -> None:
        self.app = app
        self.app_lock = app_lock
        self.mutex = threading.Lock()  # guards `queue`; never held while waiting on the App
        self.queue: list[Waiting] = []

    def add(
        self, row: CustomerRow, actor: str, reason: str
    ) -> tuple[IdentityState, dict[str, Any]]:
        """Onboard one customer, with whatever else is queued: its identity and the
        fields of its view; raises what it alone would raise."""
        mine = Waiting(OnboardingRequest(row, actor, reason))
        with self.mutex:
            self.queue.append(mine)
        while mine.added is None and mine.error is None:
            with self.app_lock:
                if mine.added is None and mine.error is None:
                    self._record_queued()
        if mine.error is not None:
            raise mine.error
        assert mine.added is not None
        return mine.added

    def _record_queued(self) -> None:
        """Under the App's lock: record the queue's oldest MAX_BATCH requests."""
        with self.mutex:
            batch, self.queue = self.queue[:MAX_BATCH], self.queue[MAX_BATCH:]
        try:
            outcomes = self.app.batched_onboarding.add_each([w.request for w in batch])
            for waiting, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, RotatorError):
                    waiting.error = outcome
                else:
                    waiting.added = (outcome, identity_fields(self.app, outcome))
        except Exception as exc:  # the database failed: every request of the batch says so
            for waiting in batch:
                if waiting.added is None:
                    waiting.error = exc
