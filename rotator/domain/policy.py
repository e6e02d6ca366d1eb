"""Policies: validated, immutable rotation rules, and the arithmetic on them.

A policy file is read by rotator.config.policies and declared in
rotator.domain.policy_file; a cron expression is turned into a schedule by an injected
factory so this module stays pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from .declared import first_refusal
from .durations import format_duration, parse_duration
from .errors import PolicyError
from .policy_file import (
    ALGORITHMS,
    DEFAULT_BITS,
    DEFAULT_PARK_AFTER,
    DEFAULT_RETRY_BASE,
    DEFAULT_RETRY_MAX,
    DEFAULT_WATCH_INTERVAL,
    MAX_POOL,
    PolicyFile,
    schedule_of,
)
from .record import RecordTags
from .schedule import CronFactory, IntervalSchedule, Schedule, spread_offset

__all__ = [
    "ALGORITHMS",
    "DEFAULT_BITS",
    "DEFAULT_PARK_AFTER",
    "DEFAULT_RETRY_MAX",
    "DEFAULT_WATCH_INTERVAL",
    "MAX_POOL",
    "CronFactory",
    "IntervalSchedule",
    "Policy",
    "Schedule",
    "backoff",
    "format_duration",
    "parse_duration",
    "parse_policy",
    "pingpong_problem",
]


@dataclass(frozen=True)
class Policy:
    name: str
    source: str
    algorithm: str
    bits: int
    schedule: Schedule
    max_queue_time: timedelta
    drain_multiplier: float
    ttl: int
    selector_template: str
    esp: str
    collision: str
    tags: RecordTags
    verify_timeout: timedelta
    retry_base: timedelta
    retry_max: timedelta
    tombstone_retention: timedelta
    cname_count: int = 12
    cname_warn_below: int = 3
    pingpong_slots: tuple[str, ...] = ("dkim1", "dkim2")
    standby: bool = False  # keep the next key published and verified ahead of time
    park_after: int = DEFAULT_PARK_AFTER
    pool: int = 0  # keys of this kind kept generated ahead of need ([key] pool)
    # dual algorithms: every identity of this policy also keeps a key of that policy active
    # (e.g. RSA here, Ed25519 there: RFC 8463 receivers check both, others the RSA one)
    companion: str = ""
    # every active and draining key (and its customer's DNS) is checked once per interval
    watch_interval: timedelta = DEFAULT_WATCH_INTERVAL
    # each identity rotates at its own stable moment this long at most after the schedule's
    spread: timedelta = timedelta(0)

    @property
    def drain_window(self) -> timedelta:
        """How long a retired key's public key stays published: multiplier x max queue time."""
        return self.max_queue_time * self.drain_multiplier

    def backoff(self, attempt: int) -> timedelta:
        """Exponential backoff for the n-th consecutive failure (1-based), capped."""
        return backoff(attempt, self.retry_base, self.retry_max)

    def rotate_at(self, activated_at: datetime, identity: str = "") -> datetime:
        """The schedule's next moment after activation, moved by the identity's offset in
        the spread window (see domain.schedule); without an identity, the schedule's own."""
        offset = spread_offset(identity, self.spread) if identity else timedelta(0)
        return self.schedule.next_rotation(activated_at) + offset

    def drain_until(self, retired_at: datetime) -> datetime:
        return retired_at + self.drain_window

    def tombstone_until(self, destroyed_at: datetime) -> datetime:
        return destroyed_at + self.tombstone_retention


def backoff(
    attempt: int, base: timedelta = DEFAULT_RETRY_BASE, cap: timedelta = DEFAULT_RETRY_MAX
) -> timedelta:
    """Exponential backoff for the n-th consecutive failure (1-based), capped. Without a
    policy (its file is gone) the defaults of a policy that sets nothing apply."""
    # Compare in seconds first: base x 2^n overflows timedelta long before any cap.
    factor = 1 << max(0, min(attempt - 1, 62))
    if base.total_seconds() * factor >= cap.total_seconds():
        return cap
    return base * factor


def pingpong_problem(policy: Policy) -> str | None:
    """A slot may only be reused once its previous key is drained and revoked: with S slots,
    S-1 rotation intervals must cover the drain window. None if the policy allows it."""
    spare = len(policy.pingpong_slots) - 1
    covered = policy.schedule.min_interval() * spare
    if covered >= policy.drain_window:
        return None
    return (
        f"policy {policy.name!r} rotates {policy.schedule.describe()} but drains for "
        f"{format_duration(policy.drain_window)}: with {len(policy.pingpong_slots)} ping-pong "
        f"slots a slot would be needed again after {format_duration(covered)}, before its old "
        "key is revoked; lengthen the interval, shorten the drain or add a slot"
    )


def parse_policy(name: str, data: Mapping[str, Any], source: str, cron: CronFactory) -> Policy:
    """A Policy from a policy file's mapping; PolicyError naming file and [section].key."""
    try:
        f = PolicyFile.model_validate(data, context={"cron": cron})
    except ValidationError as exc:
        raise PolicyError(f"{source}: {_where(exc)}") from None
    r, rec = f.rotation, f.record
    return Policy(
        name=name,
        source=source,
        algorithm=f.key.algorithm,
        bits=f.bits,
        schedule=schedule_of(r.interval, r.cron, cron),
        max_queue_time=f.drain.max_queue_time,
        drain_multiplier=f.drain.multiplier,
        ttl=f.dns.ttl,
        selector_template=f.selector.template,
        esp=f.selector.esp,
        collision=f.selector.collision,
        tags=RecordTags(flags=rec.flags, hashes=rec.hashes, service=rec.service, notes=rec.notes),
        verify_timeout=f.verify.timeout,
        retry_base=f.retry.base,
        retry_max=f.retry.max,
        park_after=f.retry.park_after,
        tombstone_retention=f.tombstone.retention,
        cname_count=f.cname.count,
        cname_warn_below=f.cname.warn_below,
        pingpong_slots=f.pingpong.slots,
        standby=f.standby.enabled,
        pool=f.key.pool,
        companion=f.key.companion,
        watch_interval=f.watch.interval,
        spread=r.spread,
    )


def _where(exc: ValidationError) -> str:
    """`[section].key: problem`; an unknown section is named by its first key."""
    r = first_refusal(exc, unknown_first=False)
    names = [str(p) for p in r.loc]
    if r.key is not None:
        return f"{r.key}: {r.problem}"
    if r.kind == "unknown" and len(names) == 1:
        if not isinstance(r.value, Mapping):
            return f"[{names[0]}]: must be a table, e.g. [{names[0]}]"
        names.append(str(next(iter(r.value))))
    where = f"[{names[0]}].{names[1]}" if len(names) > 1 else f"[{names[0]}]"
    if r.kind == "table":
        return f"{where}: must be a table"
    if r.kind == "unknown":
        return f"{where}: unknown setting (check the spelling; see README 'Policy reference')"
    return f"{where}: {r.problem}"
