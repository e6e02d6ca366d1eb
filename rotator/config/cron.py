"""Cron schedules in policy files, via APScheduler's CronTrigger (the domain only sees the
Schedule Protocol)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apscheduler.triggers.cron import CronTrigger


class CronSchedule:
    def __init__(self, expression: str) -> None:
        if len(expression.split()) != 5:
            raise ValueError("use 5 fields: minute hour day month day_of_week")
        self.expression = expression
        self._trigger = CronTrigger.from_crontab(expression, timezone=UTC)

    def next_rotation(self, after: datetime) -> datetime:
        nxt: datetime | None = self._trigger.get_next_fire_time(None, after + timedelta(seconds=1))
        if nxt is None:  # pragma: no cover - a crontab always fires again
            raise ValueError(f"cron {self.expression!r} never fires again")
        return nxt.astimezone(UTC)

    def describe(self) -> str:
        return f"cron {self.expression!r} (UTC)"

    def min_interval(self) -> timedelta:
        # Smallest gap over the next year of fire times: what ping-pong slot checks need.
        t = datetime(2026, 1, 1, tzinfo=UTC)
        prev = self.next_rotation(t)
        gap = timedelta(days=366)
        for _ in range(400):
            nxt = self.next_rotation(prev)
            gap = min(gap, nxt - prev)
            prev = nxt
        return gap


def cron_schedule(expression: str) -> CronSchedule:
    return CronSchedule(expression)
