"""Webhook delivery: one courier thread per subscription reads the log after the
subscription's cursor and POSTs each event it subscribed to, in log order (so in order
per identity), moving the cursor on only once the receiver answered 2xx: at-least-once,
across restarts and crashes (the webhook-id of a redelivery is the first one's). A failed
delivery is retried on the configured schedule, then the subscription is parked (one
WebhookParked event with the reason) until an operator resumes it; one whose secret file
cannot be read is parked at once (no retry brings a file back).

None of this runs in a tick or holds a lock the tick takes: the couriers read on their own
read-only connections, and a slow or dead receiver delays nothing but its own deliveries.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from ..config.webhooks import DEFAULT_RETRY
from ..domain import events as ev
from ..domain.errors import RotatorError
from ..ports import (
    Appended,
    Clock,
    DeliveryError,
    LogFilter,
    SecretUnreadable,
    StoredEvent,
    StreamReader,
    WebhookSender,
    WebhookVault,
)
from .webhooks import Book, Subscription, body, internal_types, message_id, public_type

log = structlog.get_logger("rotator")


@dataclass(frozen=True)
class DeliverySettings:
    retry: tuple[float, ...] = DEFAULT_RETRY  # waits before each retry; then parked
    timeout: float = 10.0  # one request, connect to last byte
    poll: float = 1.0  # how often the log is looked at for new events
    batch: int = 500  # events read from the log at once


def secret_problem(subscription: str, reason: str) -> str:
    """Why a subscription whose secret cannot be read is parked, and the way out."""
    return (
        f"{reason}; restore the file (mode 0600, readable by the daemon's user) and run "
        f"`rotator webhook resume {subscription}`, or `rotator webhook remove {subscription}` "
        "and add the URL again for a new secret"
    )


class Reader(StreamReader, Protocol):
    """A connection of its own to read the log on (closed when its thread ends)."""

    def close(self) -> None: ...


Record = Callable[[Sequence[ev.Event]], Appended]


@dataclass(frozen=True)
class CourierStats:
    """One subscription's deliveries since the daemon started, for the metrics."""

    subscription: str
    attempted: int  # POSTs, retries included
    succeeded: int  # answered 2xx
    failed: int  # no 2xx (an error status, a timeout, a refused connection)
    parked: bool
    reached: int  # the log position every event up to which was delivered or skipped


class Courier:
    """Delivers one subscription's events. The supervisor hands it the subscription as
    the log last said it is (`update`); it never reads the webhook stream itself."""

    def __init__(
        self,
        sub: Subscription,
        reader: StreamReader,
        sender: WebhookSender,
        vault: WebhookVault,
        settings: DeliverySettings,
        record: Record,
        clock: Clock,
        wait: Callable[[float], bool],
    ) -> None:
        self.sub, self.reader, self.sender, self.vault = sub, reader, sender, vault
        self.settings, self.record, self.clock = settings, record, clock
        self.wait = wait  # sleeps; True when it is time to stop
        self.seen = 0  # how far the supervisor's fold has read the log
        self.parked_by = 0  # the position of the WebhookParked this courier recorded
        # what the metrics read (from another thread: plain ints, each written here only)
        self.attempted = self.succeeded = self.failed = 0
        self.reached = sub.since  # every event up to this position is delivered or skipped

    def update(self, sub: Subscription, seen: int) -> None:
        self.sub, self.seen = sub, seen

    @property
    def parked(self) -> bool:
        # parked by the log, or by this courier before the supervisor's fold saw it
        return self.sub.parked is not None or self.seen < self.parked_by

    def stats(self) -> CourierStats:
        return CourierStats(
            self.sub.id, self.attempted, self.succeeded, self.failed, self.parked, self.reached
        )

    def run(self) -> None:
        # a courier parked from the start still has a lag to show (an unreadable cursor:
        # step() says why, once resumed)
        with contextlib.suppress(RotatorError):
            self.reached = max(self.reached, self.vault.cursor(self.sub.id) or 0)
        while True:
            more = False
            if not self.parked:
                try:
                    more = self.step()
                except RotatorError as exc:  # the log or the vault unreadable: next poll
                    log.error("webhook_delivery_failed", subscription=self.sub.id, error=str(exc))
            if not more and self.wait(self.settings.poll):
                return

    def step(self) -> bool:
        """Deliver the next batch; True if there may be more right away."""
        sub = self.sub
        top = self.reader.head()  # first: every event up to it is in the batch or before it
        cursor = max(sub.since, self.vault.cursor(sub.id) or 0)
        self.reached = max(self.reached, cursor)
        flt = LogFilter(
            types=internal_types(sub.types), after_position=cursor, limit=self.settings.batch
        )
        batch = list(self.reader.events(flt))
        skipped = None
        for stored in batch:
            kind = public_type(stored.event)
            if kind is None or kind not in sub.types:
                skipped = stored.position  # e.g. a rotation when only identity.active is asked
                continue
            if not self.deliver(stored, kind):
                return False
            self.vault.save_cursor(sub.id, stored.position)
            self.reached, skipped = max(self.reached, stored.position), None
        if skipped is not None:
            self.vault.save_cursor(sub.id, skipped)
            self.reached = max(self.reached, skipped)
        if len(batch) == self.settings.batch:
            return True
        # caught up: the events after the cursor are none of this subscription's types
        self.reached = max(self.reached, top[0] if top else 0)
        return False

    def deliver(self, stored: StoredEvent, kind: str) -> bool:
        """POST one event until it is acknowledged (True), or parked or stopped (False)."""
        sub = self.sub
        msg_id, payload = message_id(sub.id, stored.position), body(stored, kind)
        try:
            secret = self.vault.secret(sub.id)
        except SecretUnreadable as exc:  # waiting will not bring it back: parked at once
            self.park(stored.position, secret_problem(sub.id, exc.reason), 0)
            return False
        attempt = 0
        while True:
            attempt += 1
            self.attempted += 1
            try:
                self.sender.send(sub.url, secret, msg_id, payload, self.settings.timeout)
            except DeliveryError as exc:
                self.failed += 1
                if attempt > len(self.settings.retry):
                    self.park(stored.position, exc.reason, attempt)
                    return False
                delay = self.settings.retry[attempt - 1]
                log.warning(
                    "webhook_retry", subscription=sub.id, position=stored.position,
                    attempt=attempt, error=exc.reason, retry_in=delay,
                )  # fmt: skip
                if self.wait(delay) or self.sub.removed:
                    return False
                continue
            self.succeeded += 1
            return True

    def park(self, position: int, error: str, attempts: int) -> None:
        event = ev.WebhookParked(
            at=self.clock.now(), subscription=self.sub.id, position=position,
            error=error, attempts=attempts,
        )  # fmt: skip
        try:
            appended = self.record([event])
        except RotatorError as exc:  # not recorded: the schedule starts over
            log.error("webhook_park_failed", subscription=self.sub.id, error=str(exc))
            return
        self.parked_by = list(appended)[-1].position
        log.warning(
            "webhook_parked", subscription=self.sub.id, position=position,
            attempts=attempts, error=error,
        )  # fmt: skip


class Deliveries:
    """The supervisor: follows the subscriptions in the log and keeps one courier thread
    per subscription not removed (a parked one waits for its resume)."""

    def __init__(
        self,
        open_reader: Callable[[], Reader],
        sender: WebhookSender,
        vault: WebhookVault,
        settings: DeliverySettings,
        record: Record,
        clock: Clock,
    ) -> None:
        self.open_reader, self.sender, self.vault = open_reader, sender, vault
        self.settings, self.record, self.clock = settings, record, clock
        self.stopping = threading.Event()
        self.book = Book()
        self.couriers: dict[str, tuple[Courier, threading.Event, threading.Thread]] = {}
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._supervise, name="webhooks", daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every courier (a request in flight ends within its timeout)."""
        self.stopping.set()
        for _, stop, _ in self.couriers.values():
            stop.set()
        if self.thread is not None:
            self.thread.join(timeout)
        for _, _, thread in list(self.couriers.values()):
            thread.join(timeout)

    def stats(self) -> list[CourierStats]:
        """Every subscription's courier but removed ones' (read from any thread)."""
        couriers = [c for c, _, _ in list(self.couriers.values())]
        return [c.stats() for c in couriers if not c.sub.removed]

    def _supervise(self) -> None:
        try:
            reader = self.open_reader()
        except RotatorError as exc:
            log.error("webhooks_not_started", error=str(exc))
            return
        try:
            while not self.stopping.is_set():
                try:
                    self.reconcile(reader)
                except RotatorError as exc:
                    log.error("webhooks_unreadable", error=str(exc))
                self.stopping.wait(self.settings.poll)
        finally:
            reader.close()

    def reconcile(self, reader: StreamReader) -> None:
        subs = self.book.catch_up(reader)
        for sub in subs.values():
            running = self.couriers.get(sub.id)
            if sub.removed:
                if running is not None:
                    running[1].set()
                continue
            if running is not None:
                running[0].update(sub, self.book.seen)
                continue
            stop = threading.Event()
            thread = threading.Thread(
                target=self._courier, args=(sub, stop), name=f"webhook-{sub.id}", daemon=True
            )
            self.couriers[sub.id] = (Courier(sub, reader, self.sender, self.vault,
                                             self.settings, self.record, self.clock,
                                             stop.wait), stop, thread)  # fmt: skip
            thread.start()

    def _courier(self, sub: Subscription, stop: threading.Event) -> None:
        courier = self.couriers[sub.id][0]
        try:
            reader = self.open_reader()
        except RotatorError as exc:
            log.error("webhook_not_started", subscription=sub.id, error=str(exc))
            return
        courier.reader = reader  # its own connection: the supervisor's is its thread's
        try:
            courier.run()
        finally:
            reader.close()
