"""Keeping watch: what the nameservers serve for keys that sign or drain, and the customer
DNS that leads to them (drift detection, spread over the policy's watch interval).

Key ids are random (16 hex digits), so the key-id space is split by time: each tick looks
at the keys whose id falls in the share of [0, 16^16) that the time since the previous pass
is of the interval, from where the previous pass stopped, wrapping around at the end. Over
one interval every key is looked at once, at O(keys / interval) per tick, by one range
query on the primary key. A key's place in that circle follows from the clock alone, so
the watch starts where the clock says (after a restart, the keys between the last pass
before it and the start are next looked at one interval later).

Policies may ask for different intervals: each interval in use has its own circle, read by
its own range query, and keeps only the keys of its policies. The policies in use are read
from the store's per-policy counts once at start, then told by the lifecycle as it
activates keys (met): a policy's pass begins with the tick after its first activation,
whatever the intervals of the policies watched before it."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import structlog

from ..domain import events as ev
from ..domain.errors import ExternalError, FencedOut, RotatorError, StoreError
from ..domain.model import IdentityState, KeyState
from ..domain.policy import DEFAULT_WATCH_INTERVAL
from ..domain.reasons import Reason
from ..domain.states import State
from ..ports import RecordChange
from .context import Context
from .recording import KeyIds, TickReport
from .watch_checks import (
    CUSTOMER_MODES,
    Checks,
    DnsVerdict,
    KeyVerdict,
    republish_change,
    watched,
)

log = structlog.get_logger("rotator")

SPACE = 1 << 64  # key ids: uuid4().hex[:16], so [0, 16^16)
CONFIRM_PAUSE = 0.2  # seconds before the second look at what looked broken
UNANSWERED_LOG_S = 60.0  # at most one warning this often about servers that did not answer
_US = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WATCHED_STATES = frozenset({State.ACTIVE.value, State.DRAINING.value})


def position(at: datetime, interval: timedelta) -> int:
    """Where the circle of `interval` stands at `at`: the share of the current interval
    elapsed (counted from the epoch), as a point of the key-id space."""
    period = max(1, interval // _US)
    return ((at - _EPOCH) // _US % period) * SPACE // period


def _hex(n: int) -> str:
    return f"{n:016x}"


def key_slices(last: datetime, now: datetime, interval: timedelta) -> list[tuple[str, str | None]]:
    """The [low, high) ranges of key ids (high None: to the end) due after `last` up to
    `now`: consecutive calls cover the key space once per interval."""
    if now <= last:
        return []
    if now - last >= interval:
        return [("", None)]  # a whole circle (or more) went by: everything, once
    a, b = position(last, interval), position(now, interval)
    if a == b:
        return []
    spans = [(a, b)] if a < b else [(a, SPACE), (0, b)]  # wrapped around the end
    return [
        ("" if lo == 0 else _hex(lo), None if hi == SPACE else _hex(hi))
        for lo, hi in spans
        if lo < hi
    ]


class Watch:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.checks = Checks(ctx)
        self.last: datetime | None = None  # the previous pass (in memory only)
        self.policies: set[str] = set()  # the policies of the watched keys met so far
        self.learned = False  # the store's policies read (after a start, on the first pass)
        self.unanswered = 0  # checks left open since the last warning about them
        self.unanswered_said = -UNANSWERED_LOG_S

    def tick(self, now: datetime) -> None:
        """Check this tick's share of the watched keys and identities. A failure here is
        logged and never stops the lifecycle: the next circle looks again."""
        last, self.last = self.last, now
        if last is None or now <= last:
            return  # start-up begins where the clock says; so does a clock set back
        try:
            if not self.learned:
                self._learn()
            keys = [k for k in self.due(last, now) if watched(k, now)]
            if keys:
                self.watch(keys, now)
        except FencedOut:  # this node no longer leads: the tick stops
            raise
        except StoreError as exc:  # the database out of reach: the next tick looks again
            log.warning("watch_failed", error=str(exc))
        except Exception:
            log.exception("watch_crashed")

    def met(self, report: TickReport) -> None:
        """The policies of the keys this tick activated: each gets its circle from the
        next tick on (its interval may be far shorter than any watched so far)."""
        self.policies |= report.activated

    def _learn(self) -> None:
        counts = self.ctx.store.monitoring_counts()
        self.policies |= {c.policy for c in counts.keys if c.state in _WATCHED_STATES}
        self.learned = True

    def _interval(self, policy: str) -> timedelta:
        try:
            return self.ctx.policy(policy).watch_interval
        except RotatorError:  # its policy file is gone: its keys are watched all the same
            return DEFAULT_WATCH_INTERVAL

    def due(self, last: datetime, now: datetime) -> list[KeyState]:
        """The active and draining keys whose turn came between `last` and `now`."""
        found: dict[str, KeyState] = {}
        for interval in sorted({self._interval(p) for p in self.policies}):
            for low, high in key_slices(last, now, interval):
                for key in self.ctx.store.watch_keys(low, high):
                    self.policies.add(key.policy)  # a new interval gets its circle next tick
                    if self._interval(key.policy) == interval:
                        found[key.key_id] = key
        return list(found.values())

    def watch(self, keys: Sequence[KeyState], now: datetime) -> None:
        """Ask every server about each key and each key's customer DNS; look twice at what
        looks broken; republish what rotator owns; record what changed, in one transaction."""
        checks = self.checks
        verdicts = checks.keys(keys)
        idents = self._identities(keys)
        dns = checks.identities(idents, now)
        # A second look before anything is recorded as broken: a lost packet or a server
        # caught in a reload is no drift, and an event recorded for it would only flap.
        suspects = [k for k in keys if verdicts[k.key_id].wrong]
        doubtful = [i for i in idents if dns[i.identity].problem not in (None, i.dns_problem)]
        if suspects or doubtful:
            time.sleep(CONFIRM_PAUSE)
            verdicts.update(checks.keys(suspects))
            dns.update(checks.identities(doubtful, now))
        ours = [k for k in suspects if verdicts[k.key_id].wrong and not k.customer_managed]
        republished = self._republish(ours)
        events: list[ev.Event] = []
        basis: list[KeyState | IdentityState] = []
        for key in keys:
            event = self._key_event(key, verdicts[key.key_id], key.key_id in republished, now)
            if event is not None:
                events.append(event)
                basis.append(key)
        for ident in idents:
            change = self._dns_event(ident, dns[ident.identity], now)
            if change is not None:
                events.append(change)
                basis.append(ident)
        self._record(events, basis)
        self._log_unasked(keys, verdicts, idents, dns)
        log.debug("watch_pass", keys=len(keys), identities=len(idents), events=len(events))

    def _identities(self, keys: Sequence[KeyState]) -> list[IdentityState]:
        """The identities whose active key is in this pass: their customer DNS is due too."""
        out: dict[str, IdentityState] = {}
        for key in keys:
            if key.state is not State.ACTIVE or key.identity in out:
                continue
            ident = self.ctx.store.identity(key.identity)
            if ident is None or ident.active_key != key.key_id or ident.retired_at is not None:
                continue
            # another mode now (ModeChanged): a problem on record is looked at, and cleared
            if ident.mode in CUSTOMER_MODES or ident.dns_problem:
                out[ident.identity] = ident
        return list(out.values())

    def _key_event(
        self, key: KeyState, verdict: KeyVerdict, republished: bool, now: datetime
    ) -> ev.KeyEvent | None:
        ids: KeyIds = {
            "at": now,
            "key_id": key.key_id,
            "identity": key.identity,
            "domain": key.domain,
            "selector": key.selector,
        }
        if verdict.wrong:
            server, answer = verdict.drift()
            if f"{server}: {answer}" == key.drift:
                return None  # on record already: once per drift, not once per pass
            return ev.DriftDetected(**ids, server=server, answered=answer, republished=republished)
        if key.drift and not verdict.unasked:
            # every server answered, and with the record: resolved. A server that could
            # not be asked proves nothing either way, so the drift stays on record.
            return ev.DriftResolved(**ids)
        return None

    @staticmethod
    def _dns_event(ident: IdentityState, verdict: DnsVerdict, now: datetime) -> ev.Event | None:
        if verdict.unasked:
            return None  # no verdict: keep what is on record
        if verdict.problem and verdict.problem != ident.dns_problem:
            # every problem a customer check finds is the customer's DNS to fix
            return ev.CustomerDnsBroken(
                at=now,
                identity=ident.identity,
                domain=ident.domain,
                problem=verdict.problem,
                code=Reason.AWAITING_CUSTOMER_DNS,
            )
        if not verdict.problem and ident.dns_problem:
            return ev.CustomerDnsRestored(at=now, identity=ident.identity, domain=ident.domain)
        return None

    def _republish(self, keys: Sequence[KeyState]) -> set[str]:
        """The records rotator owns, replaced again (the same idempotent UPDATE that
        published them, one per zone); the ids of the keys whose UPDATE was accepted."""
        by_zone: dict[str, list[tuple[KeyState, RecordChange]]] = defaultdict(list)
        for key in keys:
            try:
                by_zone[key.zone].append((key, republish_change(key)))
            except RotatorError as exc:
                log.error("drift_not_republished", key_id=key.key_id, error=str(exc))
        done: set[str] = set()
        zones = list(by_zone.items())
        results = self.ctx.publisher.publish([(z, [c for _, c in pairs]) for z, pairs in zones])
        for (zone, pairs), server in zip(zones, results, strict=True):
            if isinstance(server, ExternalError):
                log.warning(
                    "drift_republish_failed", zone=zone, keys=len(pairs), error=server.reason
                )
                continue
            log.info("drift_republished", zone=zone, server=server, keys=len(pairs))
            done |= {k.key_id for k, _ in pairs}
        return done

    def _record(self, events: list[ev.Event], basis: list[KeyState | IdentityState]) -> None:
        """One transaction for the pass; if a stream moved meanwhile (an operator command),
        each stream on its own so that the others still land."""
        if not events:
            return
        recorder = self.ctx.recorder
        try:
            recorder.append(events, basis)
            return
        except RotatorError as exc:
            log.warning("append_conflict", action="watch", error=str(exc))
        for event, state in zip(events, basis, strict=True):  # one event per stream
            try:
                recorder.append([event], [state])
            except RotatorError as exc:
                log.warning("append_conflict", action="watch", error=str(exc))

    def _log_unasked(
        self,
        keys: Sequence[KeyState],
        verdicts: dict[str, KeyVerdict],
        idents: Sequence[IdentityState],
        dns: dict[str, DnsVerdict],
    ) -> None:
        """Servers that could not be asked: one warning a minute at most (a dead secondary
        would otherwise say so on every tick), with how many checks it left open."""
        unasked = [w for k in keys for w in verdicts[k.key_id].unasked]
        unasked += [
            f"{i.domain}: {dns[i.identity].unasked}" for i in idents if dns[i.identity].unasked
        ]
        if not unasked:
            return
        self.unanswered += len(unasked)
        if time.monotonic() - self.unanswered_said >= UNANSWERED_LOG_S:
            log.warning("watch_unanswered", count=self.unanswered, last=sorted(set(unasked))[:3])
            self.unanswered, self.unanswered_said = 0, time.monotonic()
