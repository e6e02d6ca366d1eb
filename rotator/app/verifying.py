"""Verification of publications and revocations: every address of every authoritative
nameserver must serve exactly the record (RD=0, AA=1), after the customer's part of DNS
(NS delegation, CNAME) is checked to lead there.

Propagation is not a failure. A secondary is usually milliseconds behind its primary
(NOTIFY + IXFR): servers that disagree are looked at again within the tick, then again
with a growing pause, without recording anything, until they agree (KeyVerified then
says how long it took and what the laggards answered) or the policy's verification time
runs out, which is a real failure (ActionFailed with every server's answer)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from ..domain import events as ev
from ..domain.errors import ExternalError, RotatorError
from ..domain.model import IdentityState, KeyState
from ..domain.reasons import Reason
from ..domain.states import Action, Mode
from ..domain.verification import judge, propagating, summarize
from ..ports import Observation
from .context import Context
from .customer_dns import CustomerDns, customer_of
from .customer_lanes import CustomerLanes
from .recording import TickReport, key_ids

# seconds: lagging secondaries are re-checked within the same tick every 50 ms for 0.2 s,
# and on, up to 1 s, while each look finds more records served (a secondary taking a big
# change in several transfers) or a server of their zone is at an older SOA serial than
# another (a transfer still to come); asking again only for the laggards, pipelined, costs
# milliseconds. A server that makes no progress is looked at again later instead.
SETTLE_PAUSE = 0.05
SETTLE_GRACE = 0.2
SETTLE_MAX = 1.0
SERIAL_ZONES = 256  # zones whose serials one look asks at most
SERIAL_PAUSE = 0.01  # while a transfer is on its way, its servers' serials are asked this often
FIRST_RECHECK = timedelta(seconds=0.5)  # then the pause doubles, up to the retry base

log = structlog.get_logger("rotator")
Results = tuple[dict[str, object], ...]
# Signing.activate: keys, the time, the report, the keys' unrecorded KeyVerified by key_id
Activate = Callable[[list[KeyState], datetime, TickReport, dict[str, ev.KeyVerified]], None]


@dataclass
class Wait:
    """A key whose servers do not agree yet (in memory: a restart simply checks again)."""

    first: datetime
    next_at: datetime
    checks: int = 0
    lagged: Results = ()


class Verifying:
    def __init__(self, ctx: Context, customer_dns: CustomerDns) -> None:
        self.ctx = ctx
        self.customer_dns = customer_dns
        self.waits: dict[str, Wait] = {}
        self.lanes = CustomerLanes("customer-dns")

    def next_checks(self) -> dict[str, datetime]:
        """key_id -> when a waiting key is looked at again (for the scheduler)."""
        return {k: w.next_at for k, w in self.waits.items()}

    def _due(self, keys: list[KeyState], now: datetime) -> list[KeyState]:
        return [
            k for k in keys if k.key_id not in self.waits or self.waits[k.key_id].next_at <= now
        ]

    def verify(
        self,
        keys: list[KeyState],
        now: datetime,
        report: TickReport,
        activate: Activate | None = None,
    ) -> None:
        """Keys that depend only on the ESP's DNS first; then those that need the
        customer's DNS (NS delegation, a CNAME), whose checks run concurrently, each
        within its deadline, so that one customer's dead nameservers stall nobody.
        `activate`: where the keys verified now whose activation is due at once go, their
        KeyVerified unrecorded (verified_ahead.py); without it every KeyVerified is
        recorded here."""
        ours: list[KeyState] = []
        theirs: list[KeyState] = []
        due = self._due(keys, now)
        # Each identity read once, here, on this thread: the customer checks' workers only
        # ask DNS (one SQLite connection is not for concurrent use, and a slow check may
        # outlive its deadline into the writes below).
        found = self.ctx.store.identities_named({k.identity for k in due})
        idents: dict[str, IdentityState | None] = {k.identity: found.get(k.identity) for k in due}
        for key in due:
            ident = idents[key.identity]
            needs_customer = key.lookup_name or (
                ident is not None and ident.mode == Mode.NS_DELEGATION
            )
            (theirs if needs_customer else ours).append(key)
        ahead: dict[str, tuple[KeyState, ev.KeyVerified]] | None = {} if activate else None
        self._verify_ready(ours, idents, now, report, ahead)
        ready = self._customer_checked(theirs, idents, now, report)
        self._verify_ready(ready, idents, now, report, ahead)
        if activate and ahead:
            activate(
                [key for key, _ in ahead.values()],
                now,
                report,
                {key_id: event for key_id, (_, event) in ahead.items()},
            )

    def _customer_checked(
        self,
        keys: list[KeyState],
        idents: dict[str, IdentityState | None],
        now: datetime,
        report: TickReport,
    ) -> list[KeyState]:
        if not keys:
            return []
        outcomes = self.lanes.run(
            keys,
            lambda k: customer_of(idents[k.identity], k.domain),
            lambda k, deadline: self._customer_problem(k, idents[k.identity], deadline),
            self.ctx.customer_check_s,
        )
        ready = []
        waiting = 0
        for key, out in zip(keys, outcomes, strict=True):
            if out.unchecked and not out.unchecked.late:
                waiting += 1  # other customers took the threads: not this one's failure
                continue
            if out.unchecked:
                problem: str | None = "awaiting customer DNS: " + out.unchecked.reason
            elif out.error:
                problem = f"awaiting customer DNS: the check failed: {out.error}"
            else:
                problem = out.value
            if problem:
                code = Reason.AWAITING_CUSTOMER_DNS
                self.ctx.recorder.failed([key], Action.VERIFY, problem, report, now, code=code)
            else:
                ready.append(key)
        if waiting:
            log.info("customer_dns_checks_deferred", keys=waiting)
        return ready

    def _customer_problem(
        self, key: KeyState, ident: IdentityState | None, deadline: float
    ) -> str | None:
        if ident is not None and ident.mode == Mode.NS_DELEGATION:
            # The customer's NS records are what make the key visible at all.
            problem = self.customer_dns.check(ident, deadline)
            if problem:
                return problem
        return self.customer_dns.cname_problem(key, deadline) if key.lookup_name else None

    def _verify_ready(
        self,
        ready: list[KeyState],
        idents: dict[str, IdentityState | None],
        now: datetime,
        report: TickReport,
        ahead: dict[str, tuple[KeyState, ev.KeyVerified]] | None,
    ) -> None:
        recorder = self.ctx.recorder
        verified = self._observe_all(ready, Action.VERIFY, now, report)
        events: list[ev.KeyEvent] = []
        done = []
        siblings = self.ctx.store.keys_of({k.identity for k in ready if k.key_id in verified})
        for key in ready:
            if key.key_id not in verified:
                continue
            try:
                activate_at = self._activate_at(
                    key, idents[key.identity], siblings[key.identity], now
                )
            except RotatorError as exc:  # e.g. its policy file is gone
                code = Reason.POLICY_UNAVAILABLE
                recorder.failed([key], Action.VERIFY, str(exc), report, now, code=code)
                continue
            waited, lagged = self._agreed(key, now)
            event = ev.KeyVerified(
                **key_ids(key, now),
                results=verified[key.key_id],
                activate_at=activate_at,
                waited=waited,
                lagged=lagged,
            )
            if ahead is not None and activate_at <= now:
                ahead[key.key_id] = (key, event)
                continue
            events.append(event)
            done.append(key)
        recorder.outcomes(events, done, report, Action.VERIFY, split_on_conflict=True)

    def _agreed(self, key: KeyState, now: datetime) -> tuple[float, Results]:
        wait = self.waits.pop(key.key_id, None)
        if wait is None:
            return 0.0, ()
        return round((now - wait.first).total_seconds(), 3), wait.lagged

    def _activate_at(
        self,
        key: KeyState,
        ident: IdentityState | None,
        siblings: list[KeyState],
        now: datetime,
    ) -> datetime:
        # A reused record name (ping-pong slot) may still be cached with the old key's data:
        # activate only once that record's TTL has passed.
        previous = [
            k for k in siblings if k.record_name == key.record_name and k.key_id != key.key_id
        ]
        activate_at = now + timedelta(seconds=max((k.ttl for k in previous), default=0))
        if (
            ident is not None
            and ident.active_key
            and ident.rotate_at is not None
            and self.ctx.policy(key.policy).standby
        ):
            # A standby waits, verified, for the active key's scheduled rotation.
            activate_at = max(activate_at, ident.rotate_at)
        return activate_at

    def verify_revocation(self, keys: list[KeyState], now: datetime, report: TickReport) -> None:
        keys = self._due(keys, now)
        revoked = self._observe_all(keys, Action.VERIFY_REVOCATION, now, report)
        done = [k for k in keys if k.key_id in revoked]
        events: list[ev.KeyEvent] = []
        for k in done:
            waited, lagged = self._agreed(k, now)
            events.append(
                ev.KeyRevoked(
                    **key_ids(k, now), results=revoked[k.key_id], waited=waited, lagged=lagged
                )
            )
        self.ctx.recorder.outcomes(
            events, done, report, Action.VERIFY_REVOCATION, split_on_conflict=True
        )

    def _observe_all(
        self, keys: list[KeyState], action: Action, now: datetime, report: TickReport
    ) -> dict[str, Results]:
        """Results for every key whose record every authoritative address serves. A
        secondary is usually only milliseconds behind (NOTIFY + IXFR), so keys that fail
        are looked at again after short pauses before the failure is recorded."""
        good: dict[str, Results] = {}
        why: dict[str, tuple[str, Reason, Results]] = {}
        pending = list(keys)
        started, progressed, looks = time.monotonic(), True, 0
        while pending:
            looks += 1
            if looks > 1:
                spent = time.monotonic() - started
                if spent >= SETTLE_MAX or (
                    spent >= SETTLE_GRACE
                    and not progressed
                    and not self._transferring(pending, why, started + SETTLE_MAX)
                ):
                    break
                self._settle(pending, why, started + SETTLE_MAX)
            still = []
            for key, observed in zip(pending, self._observe_many(pending), strict=True):
                if isinstance(observed, ExternalError):
                    why[key.key_id] = (observed.reason, observed.code, ())
                    still.append(key)
                    continue
                ok, results = judge(key.record, observed, key_only=key.customer_managed)
                if ok:
                    good[key.key_id] = results
                else:
                    why[key.key_id] = (summarize(results), Reason.NAMESERVERS_DISAGREE, results)
                    still.append(key)
            progressed = len(still) < len(pending)
            pending = still
        for key in pending:
            reason, code, details = why[key.key_id]
            if not self._wait(key, action, now, details):
                self.ctx.recorder.failed(
                    [key], action, reason, report, now, details=details, code=code
                )
        return good

    def _transferring(
        self, pending: list[KeyState], why: dict[str, tuple[str, Reason, Results]], by: float
    ) -> bool:
        """Whether a zone of the keys whose servers look only behind has its servers at
        different SOA serials: one of them has a change still to take (the primary's
        NOTIFY, then a transfer), which may be all of it at once after seconds of nothing.
        Zones whose servers agree on the serial (or have none that moves, as some
        providers) only get the no-progress grace."""
        zones = self._lagging_zones(pending, why)
        return bool(zones) and self._serials_differ(zones, by)

    def _settle(
        self, pending: list[KeyState], why: dict[str, tuple[str, Reason, Results]], by: float
    ) -> None:
        """The pause before the next look. While a zone of the keys that wait only for a
        lagging server has its servers at different SOA serials, the serials are asked
        again every SERIAL_PAUSE (one query per server and zone) until they agree: the
        look after that finds the transferred records at once, and asking for every
        record meanwhile would only slow the transfer. Otherwise SETTLE_PAUSE."""
        zones = self._lagging_zones(pending, why)
        if not zones or not self._serials_differ(zones, by):
            time.sleep(SETTLE_PAUSE)
            return
        while time.monotonic() + SERIAL_PAUSE < by:
            time.sleep(SERIAL_PAUSE)
            if not self._serials_differ(zones, by):
                return

    def _lagging_zones(
        self, pending: list[KeyState], why: dict[str, tuple[str, Reason, Results]]
    ) -> list[str]:
        """The zones of the pending keys whose servers only lag (the customer's own keys
        aside), at most SERIAL_ZONES of them."""
        zones = {
            k.zone for k in pending if not k.customer_managed and propagating(why[k.key_id][2])
        }
        return sorted(zones)[:SERIAL_ZONES]

    def _serials_differ(self, zones: list[str], by: float) -> bool:
        try:
            serials = self.ctx.probe.serials(zones, by)
        except ExternalError:
            return False
        return any(len({s for s in found if s is not None}) > 1 for found in serials.values())

    def _wait(self, key: KeyState, action: Action, now: datetime, results: Results) -> bool:
        """True if `key`'s servers may still be propagating (look again later, record
        nothing); False once that is no longer believable."""
        if key.customer_managed or key.attempts or not propagating(results):
            # the customer's DNS, a recorded failure already, or a server that does not
            # answer properly: no grace, the failure is recorded (and shown) at once
            return False
        wait = self.waits.get(key.key_id)
        if wait is None:
            wait = self.waits[key.key_id] = Wait(first=now, next_at=now)
        start = key.since if action is Action.VERIFY else wait.first
        try:
            policy = self.ctx.policy(key.policy)
        except RotatorError:
            return False
        if now - start >= policy.verify_timeout:
            del self.waits[key.key_id]
            return False
        wait.checks += 1
        wait.lagged = results
        pause = min(FIRST_RECHECK * (1 << min(wait.checks - 1, 20)), policy.retry_base)
        wait.next_at = now + max(pause, FIRST_RECHECK)
        log.info(
            "verification_waiting",
            action=action.value,
            domain=key.domain,
            selector=key.selector,
            key_id=key.key_id,
            checks=wait.checks,
            next_check=wait.next_at.isoformat(),
        )
        return True

    def _observe_many(self, keys: list[KeyState]) -> list[list[Observation] | ExternalError]:
        """Every key's record on every address at once: the probe pipelines the queries
        (the work is waiting on nameservers, not CPU)."""
        if not keys:
            return []
        return list(self.ctx.probe.observe_many([(k.zone, k.record_name) for k in keys]))
