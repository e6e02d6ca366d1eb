"""[webhooks] in rotator.toml: how deliveries are retried before a subscription is
parked, and how long one request may take."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import PlainValidator

from ..domain.declared import Settings, refuse, setting
from .values import number

MAX_WAIT = 7 * 86400.0  # seconds: no retry waits longer than a week
DEFAULT_RETRY = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0)


@dataclass(frozen=True)
class WebhooksConfig:
    retry: tuple[float, ...] = DEFAULT_RETRY
    timeout: float = 10.0
    poll: float = 1.0


def _retry(value: Any) -> tuple[float, ...]:
    ok = isinstance(value, list | tuple) and all(
        isinstance(v, int | float)
        and not isinstance(v, bool)
        and math.isfinite(v)
        and 0 <= v <= MAX_WAIT
        for v in value
    )
    if not ok or len(value) > 50:
        raise refuse(
            f"{value!r}: give the seconds to wait before each retry, e.g. [5, 300, 1800], "
            f"each from 0 to {MAX_WAIT:g}, at most 50 of them"
        )
    return tuple(float(v) for v in value)


class WebhooksSettings(Settings):
    UNKNOWN: ClassVar[str] = "unknown key"

    retry_seconds: Annotated[tuple[float, ...], PlainValidator(_retry)] = setting(
        DEFAULT_RETRY,
        "the waits before each retry of a failed delivery (Svix's schedule: 5 s to 10 h); "
        "after the last one the subscription is parked until `rotator webhook resume`",
        "`[5, 300, 1800, 7200, 18000, 36000]`",
    )
    timeout: Annotated[float, number(0, 300)] = setting(
        10.0, "seconds one delivery may take, connect to answer; above 0, up to 300"
    )
    poll_seconds: Annotated[float, number(0, 3600)] = setting(
        1.0, "how often the daemon looks for new events to deliver"
    )

    def config(self) -> WebhooksConfig:
        return WebhooksConfig(self.retry_seconds, self.timeout, self.poll_seconds)
