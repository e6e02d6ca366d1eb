"""The one recording path. Every use case decides from the projection, performs its side
effect, then hands the outcome events here: the expected stream versions come from the
states the decision was read from, each event is logged once (by its type), failures and
deferrals are recorded the same way everywhere, and the folded states come back so that
nobody reads again what the fold just computed.
"""

from __future__ import annotations

import functools
import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict

import structlog

from ..domain import events as ev
from ..domain.errors import ConcurrencyError, RotatorError
from ..domain.events.base import not_before
from ..domain.model import IdentityState, KeyState, replace
from ..domain.policy import DEFAULT_PARK_AFTER, backoff
from ..domain.reasons import Reason
from ..domain.states import Action
from ..ports import Appended, Clock, EventAppender, PolicySource

log = structlog.get_logger("rotator")

# Payload fields too bulky (or too sensitive to clutter) for a log line; results become a count.
_QUIET = frozenset({"record", "details", "results", "token_hash"})
# Event types an operator must notice in the logs.
_WARN = frozenset(
    {
        "ActionFailed",
        "RotationDeferred",
        "KeyCompromised",
        "StepParked",
        "DriftDetected",
        "CustomerDnsBroken",
        "SafetyStopped",
        "WebhookParked",
    }
)


@dataclass
class TickReport:
    generated: int = 0
    succeeded: int = 0
    failed: int = 0
    by_action: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # the policies of the keys an activation recorded (the new key, the one now draining):
    # the watch gives each its pass from then on
    activated: set[str] = field(default_factory=set)

    @property
    def progressed(self) -> int:
        return self.generated + self.succeeded


State = KeyState | IdentityState


@functools.cache
def _log_name(kind: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", kind).lower()


def log_name(event: ev.Event) -> str:
    """KeyPublished -> key_published: the structlog event name of each event type."""
    return _log_name(type(event).__name__)


def log_event(event: ev.Event, logger: Any = None) -> None:
    """One log line per recorded event, unless its level is filtered out: then nothing of
    it is built (a batch of 1,000 keys records 1,000 events). `logger`: a bound logger
    for the whole batch."""
    logger = logger if logger is not None else log.bind()
    warn = type(event).__name__ in _WARN
    if not logger.is_enabled_for(logging.WARNING if warn else logging.INFO):
        return
    fields: dict[str, Any] = {
        "domain": getattr(event, "domain", None),
        "selector": getattr(event, "selector", None),
        "key_id": getattr(event, "key_id", None),
    }
    if event.actor != "rotator":
        fields["actor"] = event.actor
    if event.reason:
        fields["reason"] = event.reason
    payload = event.payload()
    if "results" in payload:
        fields["nameservers"] = len(payload["results"])
    fields.update((k, v) for k, v in payload.items() if k not in _QUIET)
    clean = {k: v for k, v in fields.items() if v is not None}
    name = log_name(event)
    if warn:
        logger.warning(name, **clean)
    else:
        logger.info(name, **clean)


class Recorder:
    def __init__(
        self, store: EventAppender, policy: PolicySource, clock: Clock, origin: str = ""
    ) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock
        self.origin = origin

    @staticmethod
    def expected(events: Sequence[ev.Event], basis: Iterable[State]) -> dict[str, int]:
        """Each stream's version before the append: the version of the state the caller
        decided from, else 0 for an event that opens its stream (streams with neither are
        not checked)."""
        versions = {s.stream_id: s.version for s in basis}
        out: dict[str, int] = {}
        for e in events:
            stream = e.stream_id
            if stream in out:
                continue
            if stream in versions:
                out[stream] = versions[stream]
            elif e.opens_stream:
                out[stream] = 0
        return out

    def append(
        self,
        events: Sequence[ev.Event],
        basis: Iterable[State] = (),
        versions: dict[str, int] | None = None,
    ) -> Appended:
        """Append in one transaction; ConcurrencyError (nothing written) if a stream moved
        since `basis` was read. Operator commands let that error reach the operator."""
        # An event is stamped when it is recorded: a decision's `now` may be seconds old by
        # then (a batch of keys generated over a tick), and a time from the future stays.
        now = self.clock.now()
        events = not_before([self._stamped(e, now) for e in events], None)
        # `versions`: the expected versions of streams that have no State (tokens)
        expected = {**self.expected(events, basis), **(versions or {})}
        result = self.store.append(events, expected)
        logger = log.bind()  # the configuration is read once for the batch
        for stored in result:
            log_event(stored.event, logger)
        return result

    def _stamped(self, event: ev.Event, now: datetime) -> ev.Event:
        changes: dict[str, Any] = {}
        if event.at < now:
            changes["at"] = now
        if self.origin and not event.origin:  # the command's real uid beside any --actor
            changes["origin"] = self.origin
        # the fold's replace: no __init__ over every field (each event of a batch is stamped)
        return replace(event, **changes) if changes else event

    def outcomes(
        self,
        events: Sequence[ev.Event],
        keys: Iterable[KeyState | IdentityState],
        report: TickReport,
        action: Action,
        split_on_conflict: bool = False,
    ) -> bool:
        """Record the outcome events of many keys in one transaction (one fsync). With
        split_on_conflict (independent keys), a key that moved meanwhile makes it fall back
        to one transaction per key so that the others still land. False if any did not."""
        keys = list(keys)
        if not events:
            return True
        try:
            self.append(events, keys)
        except ConcurrencyError as exc:
            if not split_on_conflict or len(keys) == 1:
                # Someone else (an operator command) moved the key: re-decide next tick.
                log.warning("append_conflict", action=action.value, error=str(exc))
                return False
            ok = True
            for key in keys:
                if isinstance(key, KeyState):
                    mine = [e for e in events if getattr(e, "key_id", None) == key.key_id]
                    ok = self.outcomes(mine, [key], report, action) and ok
            return ok
        done = [k for k in keys if isinstance(k, KeyState)]
        report.succeeded += len(done)
        report.by_action[action.value] += len(done)
        if action is Action.ACTIVATE:
            report.activated |= {k.policy for k in done}
        return True

    def failed(
        self,
        keys: Sequence[KeyState],
        action: Action,
        reason: str,
        report: TickReport,
        now: datetime,
        details: tuple[dict[str, object], ...] = (),
        *,
        code: Reason,
    ) -> None:
        """A side effect failed: ActionFailed with the reason, its code and the next
        attempt's time (the policy's backoff; the default backoff if the policy file is
        gone)."""
        events: list[ev.KeyEvent] = []
        for key in keys:
            attempt = key.attempts + 1
            park_after = DEFAULT_PARK_AFTER
            try:
                policy = self.policy(key.policy)
            except RotatorError:
                retry_at, overdue = now + backoff(attempt), False
            else:
                retry_at = now + policy.backoff(attempt)
                overdue = action is Action.VERIFY and now - key.since >= policy.verify_timeout
                park_after = policy.park_after
            if attempt >= park_after:
                # no more silent retries: one clear event, and an operator decides
                events.append(
                    ev.StepParked(
                        **key_ids(key, now),
                        action=action.value,
                        error=reason,
                        attempts=attempt,
                        code=code,
                    )
                )
                continue
            events.append(
                ev.ActionFailed(
                    **key_ids(key, now),
                    action=action.value,
                    error=reason + (" [verification overdue]" if overdue else ""),
                    attempt=attempt,
                    retry_at=retry_at,
                    details=details,
                    code=code,
                )
            )
        try:
            self.append(events, keys)
        except ConcurrencyError as exc:
            log.warning("append_conflict", action=action.value, error=str(exc))
            return
        report.failed += len(keys)

    def defer(
        self, ident: IdentityState, now: datetime, retry_at: datetime, notice: str, code: Reason
    ) -> None:
        """A due rotation cannot start yet: RotationDeferred with the notice status shows
        and its code."""
        event = ev.RotationDeferred(
            at=now,
            identity=ident.identity,
            domain=ident.domain,
            retry_at=retry_at,
            notice=notice,
            code=code,
        )
        try:
            self.append([event], [ident])
        except ConcurrencyError as exc:
            log.warning("append_conflict", action="defer", error=str(exc))


# --- who a step is attributed to -------------------------------------------------------------


class KeyIds(TypedDict, total=False):
    at: datetime
    key_id: str
    identity: str
    domain: str
    selector: str
    actor: str
    reason: str
    emergency: bool


def key_ids(key: KeyState, now: datetime) -> KeyIds:
    """The common fields of an event about `key`. The steps an emergency set off are the
    operator's, with their reason."""
    ids: KeyIds = {
        "at": now,
        "key_id": key.key_id,
        "identity": key.identity,
        "domain": key.domain,
        "selector": key.selector,
    }
    if key.emergency_actor:
        ids["actor"] = key.emergency_actor
        ids["reason"] = key.emergency_reason
        ids["emergency"] = True
    return ids


def by_operator(ids: KeyIds, actor: str, reason: str) -> KeyIds:
    """The same ids, attributed to an operator's command."""
    return {**ids, "actor": actor, "reason": reason, "emergency": False}


def replacement_ids(ids: KeyIds, ident: IdentityState) -> KeyIds:
    """A replacement set off by an emergency on this identity is the operator's step."""
    if not ident.emergency_actor:
        return ids
    return {
        **ids,
        "actor": ident.emergency_actor,
        "reason": ident.emergency_reason,
        "emergency": True,
    }
