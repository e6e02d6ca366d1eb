"""Safety valves (as octoDNS's update and delete thresholds): a tick or a command that
would revoke, replace or remove more than a share of all active keys at once stops,
records why, and waits for an operator. A misconfigured policy (an interval of 1h where
30d was meant), a clock jump or a bad import then costs nothing but a held tick.
Emergencies are exempt: they are confirmed by the operator who declared them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import structlog

from ..domain import events as ev
from ..domain.errors import InputError
from ..ports import LogFilter
from .context import Context

log = structlog.get_logger("rotator")

SAFETY_TYPES = ("SafetyStopped", "SafetyReleased")


@dataclass(frozen=True)
class Held:
    """What a tick must leave alone: scheduled revocations and replacements."""

    revocations: bool = False
    replacements: bool = False

    @property
    def any(self) -> bool:
        return self.revocations or self.replacements


class Safety:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._seen = 0  # log position of the last safety event looked at
        self._stopped = False  # the last safety event is a stop
        self._released = False  # released: the next tick goes ahead whatever it holds

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

    def check_tick(self, now: datetime) -> Held:
        """Hold the tick's scheduled revocations and replacements if they are too many."""
        self._catch_up()
        revoke, replace = self.ctx.store.scheduled_work(now)
        if self.allows(revoke + replace):
            self._released = False  # back under the limit: the valve is armed again
            return Held()
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
                        reason=f"more than {limit} at once",
                        what=what,
                        count=revoke + replace,
                        active=self.ctx.store.count_keys("active"),
                        max_share=self.ctx.safety_max_share,
                    )
                ]
            )
            self._catch_up()
            log.error("safety_stop", what=what, limit=limit)
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
        """What is held, for `rotator status`; None when nothing is."""
        self._catch_up()
        if not self._stopped:
            return None
        last = list(self.ctx.store.events(LogFilter(types=("SafetyStopped",), after_position=0)))
        event = last[-1].event if last else None
        what = event.what if isinstance(event, ev.SafetyStopped) else "work"
        return f"safety stop: {what} held; `rotator safety release` lets it go"
