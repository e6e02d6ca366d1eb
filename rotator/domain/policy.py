"""Policies: validated, immutable rotation rules, and the arithmetic on them.

Parsing works on an already-loaded mapping (TOML is read by rotator.config.policies); a cron
expression is turned into a schedule by an injected factory so this module stays pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from . import selector as sel
from .errors import PolicyError
from .record import RecordTags
from .schedule import spread_offset

ALGORITHMS: dict[str, tuple[int, ...]] = {"rsa": (1024, 2048, 3072, 4096), "ed25519": (256,)}
DEFAULT_BITS = {"rsa": 2048, "ed25519": 256}
_DURATION = re.compile(
    r"^\s*(?:(\d+)\s*w)?\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*"
    r"(?:(\d+)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*$"
)
_FLAGS = {"y", "s"}
MAX_DURATION_S = 10 * 366 * 86400
_HASHES = {"sha1", "sha256"}
DEFAULT_WATCH_INTERVAL = timedelta(days=1)  # [watch] interval


class Schedule(Protocol):
    """When the next rotation is due after `after` (an aware UTC datetime)."""

    def next_rotation(self, after: datetime) -> datetime: ...

    def describe(self) -> str: ...

    def min_interval(self) -> timedelta: ...


@dataclass(frozen=True)
class IntervalSchedule:
    interval: timedelta

    def next_rotation(self, after: datetime) -> datetime:
        return after + self.interval

    def describe(self) -> str:
        return f"every {format_duration(self.interval)}"

    def min_interval(self) -> timedelta:
        return self.interval


CronFactory = Callable[[str], Schedule]


MAX_POOL = 100_000
_POLICY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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
    park_after: int = 48  # see DEFAULT_PARK_AFTER
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


DEFAULT_PARK_AFTER = 48  # failures in a row before a step waits for an operator
DEFAULT_RETRY_BASE = timedelta(seconds=30)
DEFAULT_RETRY_MAX = timedelta(hours=1)


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


def parse_duration(value: object) -> timedelta:
    """'30s', '5m', '1h30m', '5d', '2w', or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError('expected a duration like "5d" or "30s"')
    if isinstance(value, int | float):
        if not 0 <= value <= MAX_DURATION_S:  # also rejects nan
            raise ValueError(f"must be between 0 and {MAX_DURATION_S}s (10 years)")
        return timedelta(seconds=value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError('expected a duration like "5d" or "30s"')
    m = _DURATION.match(value)
    if not m or not any(m.groups()):
        raise ValueError(f'{value!r} is not a duration; use e.g. "5d", "12h", "30s"')
    w, d, h, mi, s = m.groups()
    total = (
        int(w or 0) * 604800
        + int(d or 0) * 86400
        + int(h or 0) * 3600
        + int(mi or 0) * 60
        + float(s or 0)
    )
    if total > MAX_DURATION_S:
        raise ValueError(f"{value!r} is longer than 10 years")
    return timedelta(seconds=total)


def format_duration(td: timedelta) -> str:
    secs = td.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size and secs % size == 0:
            return f"{int(secs // size)}{unit}"
    return f"{secs:g}s"


class _Reader:
    """Reads one section of the policy mapping, raising PolicyError naming file and key."""

    def __init__(self, source: str, data: Mapping[str, Any]) -> None:
        self.source = source
        self.data = data
        self.used: set[tuple[str, str]] = set()

    def fail(self, section: str, key: str, problem: str) -> PolicyError:
        where = f"[{section}].{key}" if key else f"[{section}]"
        return PolicyError(f"{self.source}: {where}: {problem}")

    def get(self, section: str, key: str, default: Any) -> Any:
        block = self.data.get(section, {})
        if not isinstance(block, Mapping):
            raise self.fail(section, "", "must be a table")
        self.used.add((section, key))
        return block.get(key, default)

    def duration(self, section: str, key: str, default: str, minimum: float = 0) -> timedelta:
        raw = self.get(section, key, default)
        try:
            td = parse_duration(raw)
        except ValueError as exc:
            raise self.fail(section, key, str(exc)) from None
        if td.total_seconds() < minimum:
            raise self.fail(section, key, f"must be at least {minimum:g}s, got {raw!r}")
        return td

    def check_unknown(self) -> None:
        for section, block in self.data.items():
            if section == "description":
                continue
            if not isinstance(block, Mapping):
                raise self.fail(section, "", "must be a table, e.g. [" + section + "]")
            for key in block:
                if (section, key) not in self.used:
                    raise self.fail(
                        section,
                        key,
                        "unknown setting (check the spelling; see README 'Policy reference')",
                    )


def parse_policy(name: str, data: Mapping[str, Any], source: str, cron: CronFactory) -> Policy:
    r = _Reader(source, data)

    algorithm = r.get("key", "algorithm", "rsa")
    if algorithm not in ALGORITHMS:
        raise r.fail("key", "algorithm", f"{algorithm!r} is not supported; use rsa or ed25519")
    bits = r.get("key", "bits", DEFAULT_BITS[algorithm])
    if isinstance(bits, bool) or bits not in ALGORITHMS[algorithm]:
        allowed = ", ".join(str(b) for b in ALGORITHMS[algorithm])
        raise r.fail("key", "bits", f"{bits!r} is not valid for {algorithm}; use {allowed}")
    companion = r.get("key", "companion", "")
    if not isinstance(companion, str) or (companion and not _POLICY_NAME.fullmatch(companion)):
        raise r.fail("key", "companion", f"{companion!r}: give the name of another policy")
    pool = r.get("key", "pool", 0)
    if isinstance(pool, bool) or not isinstance(pool, int) or not 0 <= pool <= MAX_POOL:
        raise r.fail("key", "pool", f"{pool!r}: give a number of keys from 0 to {MAX_POOL}")

    interval = r.get("rotation", "interval", None)
    cron_expr = r.get("rotation", "cron", None)
    schedule: Schedule
    if interval is not None and cron_expr is not None:
        raise r.fail("rotation", "cron", "set either interval or cron, not both")
    if cron_expr is not None:
        if not isinstance(cron_expr, str):
            raise r.fail("rotation", "cron", 'must be a string like "0 3 1 * *"')
        try:
            schedule = cron(cron_expr)
        except ValueError as exc:
            raise r.fail("rotation", "cron", f"{cron_expr!r}: {exc}") from None
    else:
        schedule = IntervalSchedule(r.duration("rotation", "interval", "30d", minimum=1))

    spread = r.duration("rotation", "spread", "0s")
    if spread and spread >= schedule.min_interval():
        raise r.fail(
            "rotation",
            "spread",
            f"{format_duration(spread)} is not shorter than the schedule's shortest interval "
            f"({schedule.describe()}): every identity must rotate once per interval",
        )

    max_queue = r.duration("drain", "max_queue_time", "5d")
    multiplier = r.get("drain", "multiplier", 3)
    if (
        isinstance(multiplier, bool)
        or not isinstance(multiplier, int | float)
        or not 1 <= multiplier <= 100  # also rejects nan and inf
    ):
        raise r.fail("drain", "multiplier", f"must be a number from 1 to 100, got {multiplier!r}")

    ttl = r.get("dns", "ttl", 3600)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= 2_147_483_647:
        raise r.fail("dns", "ttl", f"must be an integer number of seconds, got {ttl!r}")

    template = r.get("selector", "template", "{mon}{yyyy}.{esp}")
    esp = r.get("selector", "esp", "myesp")
    collision = r.get("selector", "collision", "suffix")
    if not isinstance(template, str):
        raise r.fail("selector", "template", 'must be a string like "{mon}{yyyy}.{esp}"')
    try:
        sel.check_template(template)
        sel.validate_selector(str(esp))
    except ValueError as exc:
        raise r.fail("selector", "template", str(exc)) from None
    except Exception as exc:  # InputError from validate_selector
        raise r.fail("selector", "esp", str(exc)) from None
    if collision not in ("suffix", "fail"):
        raise r.fail("selector", "collision", f'{collision!r}: use "suffix" or "fail"')
    try:
        sel.render(template, datetime(2026, 11, 24, 12, 0, 0), str(esp))
    except Exception as exc:
        raise r.fail("selector", "template", str(exc)) from None

    flags = r.get("record", "flags", [])
    hashes = r.get("record", "hashes", [])
    service = r.get("record", "service", "")
    notes = r.get("record", "notes", "")
    if not isinstance(flags, list) or not set(flags) <= _FLAGS:
        raise r.fail("record", "flags", f'{flags!r}: use a list of "y" and/or "s"')
    if not isinstance(hashes, list) or not set(hashes) <= _HASHES:
        raise r.fail("record", "hashes", f'{hashes!r}: use a list of "sha256" and/or "sha1"')
    if algorithm == "ed25519" and hashes and "sha256" not in hashes:
        raise r.fail("record", "hashes", "ed25519 signatures use sha256; include it")
    if service not in ("", "*", "email"):
        raise r.fail("record", "service", f'{service!r}: use "email" or "*"')
    if not isinstance(notes, str):
        raise r.fail("record", "notes", "must be a string")

    verify_timeout = r.duration("verify", "timeout", "1h", minimum=1)
    retry_base = r.duration("retry", "base", format_duration(DEFAULT_RETRY_BASE), minimum=0.05)
    retry_max = r.duration("retry", "max", format_duration(DEFAULT_RETRY_MAX), minimum=0.05)
    if retry_max < retry_base:
        raise r.fail("retry", "max", "must be at least [retry].base")
    park_after = r.get("retry", "park_after", DEFAULT_PARK_AFTER)
    if isinstance(park_after, bool) or not isinstance(park_after, int) or not park_after >= 1:
        raise r.fail("retry", "park_after", f"must be a whole number >= 1, got {park_after!r}")
    tombstone = r.duration("tombstone", "retention", "30d")
    cname_count = r.get("cname", "count", 12)
    if (
        isinstance(cname_count, bool)
        or not isinstance(cname_count, int)
        or not (1 <= cname_count <= 1000)
    ):
        raise r.fail("cname", "count", f"must be an integer from 1 to 1000, got {cname_count!r}")
    warn_below = r.get("cname", "warn_below", 3)
    if (
        isinstance(warn_below, bool)
        or not isinstance(warn_below, int)
        or not (0 <= warn_below <= cname_count)
    ):
        raise r.fail("cname", "warn_below", "must be an integer from 0 to [cname].count")
    slots = r.get("pingpong", "slots", ["dkim1", "dkim2"])
    if (
        not isinstance(slots, list)
        or not 2 <= len(slots) <= 3
        or len(set(slots)) != len(slots)
        or not all(isinstance(x, str) for x in slots)
    ):
        raise r.fail("pingpong", "slots", f"{slots!r}: give 2 or 3 distinct selector names")
    for slot in slots:
        try:
            sel.validate_selector(slot)
        except Exception as exc:
            raise r.fail("pingpong", "slots", str(exc)) from None
    watch_interval = r.duration(
        "watch", "interval", format_duration(DEFAULT_WATCH_INTERVAL), minimum=1
    )
    standby = r.get("standby", "enabled", False)
    if not isinstance(standby, bool):
        raise r.fail("standby", "enabled", f"must be true or false, got {standby!r}")
    r.check_unknown()

    return Policy(
        name=name,
        source=source,
        algorithm=algorithm,
        bits=int(bits),
        schedule=schedule,
        max_queue_time=max_queue,
        drain_multiplier=float(multiplier),
        ttl=ttl,
        selector_template=template,
        esp=str(esp),
        collision=collision,
        tags=RecordTags(flags=tuple(flags), hashes=tuple(hashes), service=service, notes=notes),
        verify_timeout=verify_timeout,
        retry_base=retry_base,
        retry_max=retry_max,
        park_after=park_after,
        tombstone_retention=tombstone,
        cname_count=cname_count,
        cname_warn_below=warn_below,
        pingpong_slots=tuple(slots),
        standby=standby,
        pool=pool,
        companion=companion,
        watch_interval=watch_interval,
        spread=spread,
    )
