"""Whether the DNS backends serve the zones that new identities publish in, asked before
anything is recorded. A backend that answers that it does not (NOTAUTH, REFUSED, no such
zone, a refused credential) refuses the onboarding with its one line. One that could not be
asked (no answer, a network error) lets it go on with a warning: its keys wait for it, as
they would for a backend that fails later. An answer is reused for a minute, since the API
onboards many customers into the same few zones; so is a failure to get one, since the API
asks under its lock, and a backend that does not answer would otherwise hold every request
for its timeout. NS-delegated customers each bring a zone of their own, asked several at
once."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from ..domain.errors import PublishError
from .context import Context

ZONE_CHECK_AGE = timedelta(minutes=1)
AT_ONCE = 16  # zones asked at once
# what a warning of a zone whose backend could not be asked adds
ZONE_UNASKED = (
    "its keys wait until the backend answers; if it does not serve the zone, add it there"
)


class ZoneChecks:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._answers: dict[str, tuple[datetime, str | None]] = {}  # zone -> (when, problem)
        # zone -> (when, why it could not be asked): the last try
        self._unasked: dict[str, tuple[datetime, str]] = {}

    def refused(self, zones: Iterable[str]) -> dict[str, str]:
        """zone -> what its backend answered, for the zones it answered it does not serve.
        The zones it could not be asked about are remembered for unasked()."""
        now, zones = self.ctx.clock.now(), set(zones)
        ask = sorted(z for z in zones if not self._fresh(z, now))
        for zone, answer in zip(ask, self._ask(ask), strict=True):
            if isinstance(answer, PublishError):
                self._unasked[zone] = (now, answer.reason)
                self._answers.pop(zone, None)
            else:
                self._unasked.pop(zone, None)
                self._answers[zone] = (now, answer)
        return {z: problem for z in zones if (problem := self._problem(z))}

    def unasked(self, zones: Iterable[str]) -> list[str]:
        """Why each of `zones` could not be asked about when refused() last tried."""
        return [tried[1] for z in sorted(set(zones)) if (tried := self._unasked.get(z))]

    def _fresh(self, zone: str, now: datetime) -> bool:
        """Whether the zone was asked (answered or not) less than a minute ago."""
        last = self._answers.get(zone) or self._unasked.get(zone)
        return last is not None and now - last[0] <= ZONE_CHECK_AGE

    def _problem(self, zone: str) -> str | None:
        seen = self._answers.get(zone)
        return seen[1] if seen else None

    def _ask(self, zones: list[str]) -> list[str | PublishError | None]:
        publisher = self.ctx.publisher

        def one(zone: str) -> str | PublishError | None:
            try:
                return publisher.zone_problem(zone)
            except PublishError as exc:
                return exc

        if len(zones) < 2:
            return [one(z) for z in zones]
        with ThreadPoolExecutor(min(AT_ONCE, len(zones)), thread_name_prefix="zones") as pool:
            return list(pool.map(one, zones))
