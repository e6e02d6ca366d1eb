"""Safety valves (as octoDNS's update and delete thresholds): a tick or a command that
would revoke, replace or remove more than a share of all active keys at once stops,
records why, and waits for an operator. A misconfigured policy (an interval of 1h where
30d was meant), a clock jump or a bad import then costs nothing but a held tick.
Emergencies are exempt: they are confirmed by the operator who declared them.

Routine work is paced instead of held: a policy with a [rotation] spread makes each
identity due at its own moment in the window after the schedule's. Of the scheduled work
of such policies a tick starts only what keeps the last hour within the limit; the rest
stays due for a later tick, nothing is recorded. The valve weighs what the schedule does
not explain: work overdue by more than its policy's spread (a backlog the pace cannot
clear, a clock jump, a daemon down longer than the spread) and all work of a policy
without a spread, which is as likely to be due at one instant as not.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from ..domain import events as ev
from ..domain.errors import InputError, RotatorError
from ..ports import LogFilter
from .context import Context

log = structlog.get_logger("rotator")

SAFETY_TYPES = ("SafetyStopped", "SafetyReleased")
PACE_WINDOW = timedelta(hours=1)  # the limit applies to paced work per this window
PACE_GRACE = timedelta(minutes=5)  # due this long and not started: waiting for the pace


@dataclass(frozen=True)
class Held:
    """What a tick must leave alone: scheduled revocations and replacements; and how much
    scheduled work of spread policies it may start (None: no pace, a release lets all go)."""

    revocations: bool = False
    replacements: bool = False
    budget: int | None = None

    @property
    def any(self) -> bool:
        return self.revocations or self.replacements


class Safety:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._seen = 0  # log position of the last safety event looked at
        self._stopped = False  # the last safety event is a stop
        self._released = False  # released: the next tick goes ahead whatever it holds
        # paced work started within the last PACE_WINDOW (in memory: a restart forgets it,
        # so one more share may go in the hour of a restart)
        self._started: deque[tuple[datetime, int]] = deque()
        self.waiting = 0  # work the pace left due at the last tick

    def limit(self) -> int:
        """The most keys a tick or command may revoke, replace or remove at once."""
        active = self.ctx.store.count_keys("active")
        return max(self.ctx.safety_min_keys, int(active * self.ctx.safety_max_share))

    def allows(self, count: int) -> bool:
        """Whether `count` keys at once are within the limit. Counts the active keys only
        as far as the answer needs (an idle tick at a million keys counts none)."""
        if count <= self.ctx.safety_min_keys:
            return True
        share = self.ctx.safety_max_share
        if share <= 0:
            return False
        # enough active keys to allow `count`, with a margin for float rounding
        enough = math.ceil(count / share) + 1
        active = self.ctx.store.count_keys("active", up_to=enough)
        return int(active * share) >= count

    def _catch_up(self) -> None:
        for stored in self.ctx.store.events(
            LogFilter(types=SAFETY_TYPES, after_position=self._seen)
        ):
            self._seen = stored.position
            self._stopped = isinstance(stored.event, ev.SafetyStopped)
            self._released = isinstance(stored.event, ev.SafetyReleased)

    def spread(self, policy: str) -> timedelta:
        try:
            return self.ctx.policy(policy).spread
        except RotatorError:  # its file is gone: nothing spreads its work
            return timedelta(0)

    def _spread_work(self, due_by: datetime, within: datetime | None = None) -> int:
        """Scheduled work of policies with a spread due by `due_by`; with `within`, only
        what is still inside its spread window at that time."""
        total = 0
        for name in self.ctx.store.scheduled_policies(due_by):
            spread = self.spread(name)
            if spread > timedelta(0):
                after = within - spread if within is not None else None
                total += sum(self.ctx.store.scheduled_work(due_by, name, after))
        return total

    def started(self, now: datetime, count: int) -> None:
        """A tick started `count` pieces of paced work."""
        if count:
            self._started.append((now, count))

    def _budget(self, now: datetime) -> int:
        while self._started and self._started[0][0] <= now - PACE_WINDOW:
            self._started.popleft()
        return max(0, self.limit() - sum(n for _, n in self._started))

    def paced_until(self) -> datetime | None:
        """When the pace lets more go, if it left work waiting."""
        if not self.waiting or not self._started:
            return None
        return self._started[0][0] + PACE_WINDOW

    def check_tick(self, now: datetime) -> Held:
        """Hold the tick's scheduled revocations and replacements if more of them than the
        limit are not explained by a spread schedule; else pace those of spread policies."""
        self._catch_up()
        revoke, replace = self.ctx.store.scheduled_work(now)
        if not revoke + replace:
            self._released = False
            return Held()
        unexplained = revoke + replace - self._spread_work(now, within=now)
        if self.allows(unexplained):
            self._released = False  # back under the limit: the valve is armed again
            return Held(budget=self._budget(now))
        if self._released:
            # an operator let this backlog go: this tick does it, the next is weighed anew
            self._released = False
            return Held()
        limit = self.limit()
        if not self._stopped:
            what = f"revoke {revoke} and replace {replace} keys"
            self.ctx.recorder.append(
                [
                    ev.SafetyStopped(
                        at=now,
                        reason=(
                            f"more than {limit} at once ({unexplained} not explained by "
                            "a spread schedule)"
                        ),
                        what=what,
                        count=revoke + replace,
                        active=self.ctx.store.count_keys("active"),
                        max_share=self.ctx.safety_max_share,
                    )
                ]
            )
            self._catch_up()
            log.error("safety_stop", what=what, limit=limit, unexplained=unexplained)
        return Held(revocations=revoke > 0, replacements=replace > 0)

    def release(self, actor: str, reason: str) -> None:
        self._catch_up()
        if not self._stopped:
            raise InputError("nothing is held: no safety stop is waiting for a release")
        self.ctx.recorder.append(
            [ev.SafetyReleased(at=self.ctx.clock.now(), actor=actor, reason=reason)]
        )

    def check_command(self, count: int, what: str, confirmed: bool) -> None:
        """An operator command touching `count` keys: refused above the limit unless
        confirmed (--yes)."""
        if not confirmed and not self.allows(count):
            limit = self.limit()
            raise InputError(
                f"{what} touches {count} keys, more than the safety limit of {limit} "
                f"({self.ctx.safety_max_share:.0%} of the active keys); check the scope, "
                "then add --yes"
            )

    def held(self) -> str | None:
        """What is held or paced, for `rotator status`; None when nothing is."""
        self._catch_up()
        if not self._stopped:
            # another process (the daemon) paces: what it would have started by now
            now = self.ctx.clock.now()
            waiting = max(self.waiting, self._spread_work(now - PACE_GRACE))
            if not waiting:
                return None
            return (
                f"paced: {waiting} scheduled replacements and revocations wait their turn; "
                f"at most {self.limit()} an hour (safety.max_share of the active keys)"
            )
        last = list(self.ctx.store.events(LogFilter(types=("SafetyStopped",), after_position=0)))
        event = last[-1].event if last else None
        what = event.what if isinstance(event, ev.SafetyStopped) else "work"
        return f"safety stop: {what} held; `rotator safety release` lets it go"
