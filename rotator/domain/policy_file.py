"""A policy file (policies/*.toml) declared as a model: each [section] a table of settings
with its default and meaning (the README's policy reference is printed from them), each
value checked as it is read. rotator.domain.policy turns a valid file into a Policy."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import PlainValidator, ValidationInfo, field_validator, model_validator

from . import selector as sel
from .declared import Settings, flag, real, refuse, setting, text, whole
from .durations import format_duration, parse_duration
from .schedule import CronFactory, IntervalSchedule, Schedule

ALGORITHMS: dict[str, tuple[int, ...]] = {"rsa": (1024, 2048, 3072, 4096), "ed25519": (256,)}
DEFAULT_BITS = {"rsa": 2048, "ed25519": 256}
MAX_POOL = 100_000
DEFAULT_PARK_AFTER = 48  # failures in a row before a step waits for an operator
DEFAULT_RETRY_BASE = timedelta(seconds=30)
DEFAULT_RETRY_MAX = timedelta(hours=1)
DEFAULT_WATCH_INTERVAL = timedelta(days=1)
_POLICY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def duration(minimum: float = 0) -> PlainValidator:
    def check(value: Any) -> timedelta:
        try:
            td = parse_duration(value)
        except ValueError as exc:
            raise refuse(str(exc)) from None
        if td.total_seconds() < minimum:
            raise refuse(f"must be at least {minimum:g}s, got {value!r}")
        return td

    return PlainValidator(check)


def _strings(allowed: set[str], problem: str) -> PlainValidator:
    def check(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(
            isinstance(v, str) and v in allowed for v in value
        ):
            raise refuse(f"{value!r}: {problem}")
        return tuple(value)

    return PlainValidator(check)


def _algorithm(value: Any) -> str:
    if not isinstance(value, str) or value not in ALGORITHMS:
        raise refuse(f"{value!r} is not supported; use rsa or ed25519")
    return str(value)


class KeySection(Settings):
    algorithm: Annotated[str, PlainValidator(_algorithm)] = setting(
        "rsa", "`rsa` or `ed25519` (RFC 8463)"
    )
    bits: int | None = setting(
        None, "rsa: 1024, 2048, 3072, 4096; ed25519: 256", "`2048` (rsa), `256` (ed25519)"
    )
    companion: Annotated[
        str,
        text(
            lambda v: f"{v!r}: give the name of another policy",
            lambda v: not v or bool(_POLICY_NAME.fullmatch(v)),
        ),
    ] = setting(
        "",
        "a policy of the other algorithm whose key every identity of this one also keeps "
        "active (RSA beside Ed25519: RFC 8463 receivers check both); it has no companion "
        "itself and another selector template",
        "none",
    )
    pool: Annotated[
        int,
        whole(
            lambda v: 0 <= v <= MAX_POOL,
            lambda v: f"{v!r}: give a number of keys from 0 to {MAX_POOL}",
        ),
    ] = setting(0, "keys of this kind kept generated ahead of need (0 to 100000)")

    @field_validator("bits", mode="plain")
    @classmethod
    def _bits(cls, value: Any, info: ValidationInfo) -> int:
        algorithm = info.data.get("algorithm", "rsa")
        if isinstance(value, bool) or value not in ALGORITHMS[algorithm]:
            allowed = ", ".join(str(b) for b in ALGORITHMS[algorithm])
            raise refuse(f"{value!r} is not valid for {algorithm}; use {allowed}")
        return int(value)


class RotationSection(Settings):
    interval: Annotated[timedelta | None, duration(minimum=1)] = setting(
        None,
        'how often a key is replaced, e.g. `"30d"`; or `cron`, not both',
        "`30d`",
    )
    cron: str | None = setting(
        None,
        "a 5-field crontab in UTC (APScheduler `CronTrigger`), e.g. `0 3 1 * *`; or "
        "`interval`, not both",
        "none",
    )
    spread: Annotated[timedelta, duration()] = setting(
        timedelta(0),
        "each identity rotates at its own stable moment (a hash of its name) this long at "
        "most after the schedule's; shorter than the schedule's shortest interval. For an "
        "interval schedule a key lives the interval plus that offset. Scheduled work of a "
        "policy with a spread is paced to the safety share per hour (see Safety valve)",
        "`0s`",
    )

    @field_validator("cron", mode="plain")
    @classmethod
    def _cron(cls, value: Any, info: ValidationInfo) -> str:
        if info.data.get("interval") is not None:
            raise refuse("set either interval or cron, not both")
        if not isinstance(value, str):
            raise refuse('must be a string like "0 3 1 * *"')
        try:
            _cron_factory(info)(value)
        except ValueError as exc:
            raise refuse(f"{value!r}: {exc}") from None
        return value

    @field_validator("spread", mode="after")
    @classmethod
    def _spread(cls, value: timedelta, info: ValidationInfo) -> timedelta:
        if not value:
            return value
        schedule = schedule_of(info.data.get("interval"), info.data.get("cron"), info)
        if value >= schedule.min_interval():
            raise refuse(
                f"{format_duration(value)} is not shorter than the schedule's shortest "
                f"interval ({schedule.describe()}): every identity must rotate once per interval"
            )
        return value


def _cron_factory(info: ValidationInfo) -> CronFactory:
    factory: CronFactory = (info.context or {})["cron"]
    return factory


def schedule_of(interval: timedelta | None, cron: str | None, info: Any) -> Schedule:
    """The schedule: `info` is a ValidationInfo, or the cron factory itself."""
    if cron is not None:
        factory = info if callable(info) else _cron_factory(info)
        return factory(cron)
    return IntervalSchedule(interval or timedelta(days=30))


class DrainSection(Settings):
    max_queue_time: Annotated[timedelta, duration()] = setting(
        timedelta(days=5), "longest a message can sit in a queue before delivery", "`5d`"
    )
    multiplier: Annotated[
        float,
        real(lambda v: 1 <= v <= 100, lambda v: f"must be a number from 1 to 100, got {v!r}"),
    ] = setting(3.0, "drain window = multiplier x max queue time (15 days by default)")


class DnsSection(Settings):
    ttl: Annotated[
        int,
        whole(
            lambda v: 0 <= v <= 2_147_483_647,
            lambda v: f"must be an integer number of seconds, got {v!r}",
        ),
    ] = setting(3600, "TTL of the published records")


def _template(value: Any) -> str:
    if not isinstance(value, str):
        raise refuse('must be a string like "{mon}{yyyy}.{esp}"')
    try:
        sel.check_template(value)
    except ValueError as exc:
        raise refuse(str(exc)) from None
    return value


def _esp(value: Any) -> str:
    try:
        sel.validate_selector(str(value))
    except Exception as exc:  # InputError
        raise refuse(str(exc)) from None
    return str(value)


def _collision(value: Any) -> str:
    if value not in ("suffix", "fail"):
        raise refuse(f'{value!r}: use "suffix" or "fail"')
    return str(value)


class SelectorSection(Settings):
    template: Annotated[str, PlainValidator(_template)] = setting(
        "{mon}{yyyy}.{esp}",
        "fields: `mon yyyy yy mm dd hh mi ss unix esp`, e.g. `nov2026.myesp`",
    )
    esp: Annotated[str, PlainValidator(_esp)] = setting(
        "myesp", "the ESP's label, the template's `{esp}`"
    )
    collision: Annotated[str, PlainValidator(_collision)] = setting(
        "suffix",
        "on a clash `suffix` adds b, c, … to the first label (`nov2026b.myesp`); `fail` refuses",
    )

    @model_validator(mode="after")
    def _renders(self) -> SelectorSection:
        try:
            sel.render(self.template, datetime(2026, 11, 24, 12, 0, 0), self.esp)
        except Exception as exc:
            raise refuse(str(exc), key="[selector].template") from None
        return self


def _service(value: Any) -> str:
    if value not in ("", "*", "email"):
        raise refuse(f'{value!r}: use "email" or "*"')
    return str(value)


class RecordSection(Settings):
    flags: Annotated[tuple[str, ...], _strings({"y", "s"}, 'use a list of "y" and/or "s"')] = (
        setting((), '`t=`: `["y"]` (testing), `["s"]` (no subdomains)', "none")
    )
    hashes: Annotated[
        tuple[str, ...], _strings({"sha1", "sha256"}, 'use a list of "sha256" and/or "sha1"')
    ] = setting((), '`h=`: `["sha256"]`, `["sha1"]`', "none")
    service: Annotated[str, PlainValidator(_service)] = setting(
        "", '`s=`: `"email"` or `"*"`', "none"
    )
    notes: Annotated[str, text(lambda _: "must be a string")] = setting("", "`n=`", "none")


class VerifySection(Settings):
    timeout: Annotated[timedelta, duration(minimum=1)] = setting(
        timedelta(hours=1), "after this, failures are marked `[verification overdue]`", "`1h`"
    )


class RetrySection(Settings):
    base: Annotated[timedelta, duration(minimum=0.05)] = setting(
        DEFAULT_RETRY_BASE, "exponential backoff of failed steps: the first wait", "`30s`"
    )
    max: Annotated[timedelta, duration(minimum=0.05)] = setting(
        DEFAULT_RETRY_MAX, "the longest wait between two tries (at least `base`)", "`1h`"
    )
    park_after: Annotated[
        int, whole(lambda v: v >= 1, lambda v: f"must be a whole number >= 1, got {v!r}")
    ] = setting(
        DEFAULT_PARK_AFTER,
        "failures in a row after which a step waits for an operator (`rotator resume`)",
    )

    @model_validator(mode="after")
    def _max_at_least_base(self) -> RetrySection:
        if self.max < self.base:
            raise refuse("must be at least [retry].base", key="[retry].max")
        return self


class TombstoneSection(Settings):
    retention: Annotated[timedelta, duration()] = setting(
        timedelta(days=30), "how long `v=DKIM1; p=` stays before the record is deleted", "`30d`"
    )


class CnameSection(Settings):
    count: Annotated[
        int,
        whole(lambda v: 1 <= v <= 1000, lambda v: f"must be an integer from 1 to 1000, got {v!r}"),
    ] = setting(12, "`cname` mode: CNAMEs the customer pre-creates (`<esp>1`…)")
    warn_below: Annotated[
        int, whole(lambda v: v >= 0, lambda _: "must be an integer from 0 to [cname].count")
    ] = setting(3, "`cname` mode: warn when fewer unused CNAMEs are left")

    @model_validator(mode="after")
    def _below_count(self) -> CnameSection:
        if self.warn_below > self.count:
            raise refuse("must be an integer from 0 to [cname].count", key="[cname].warn_below")
        return self


def _slots(value: Any) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or not all(isinstance(x, str) for x in value)
        or not 2 <= len(value) <= 3
        or len(set(value)) != len(value)
    ):
        raise refuse(f"{value!r}: give 2 or 3 distinct selector names")
    for slot in value:
        try:
            sel.validate_selector(slot)
        except Exception as exc:  # InputError
            raise refuse(str(exc)) from None
    return tuple(value)


class PingpongSection(Settings):
    slots: Annotated[tuple[str, ...], PlainValidator(_slots)] = setting(
        ("dkim1", "dkim2"),
        "`ping-pong` mode: 2 or 3 fixed selector names",
        '`["dkim1", "dkim2"]`',
    )


class WatchSection(Settings):
    interval: Annotated[timedelta, duration(minimum=1)] = setting(
        DEFAULT_WATCH_INTERVAL,
        "every active and draining key (and its customer's DNS) is checked once per interval",
        "`1d`",
    )


class StandbySection(Settings):
    enabled: Annotated[bool, flag(lambda v: f"must be true or false, got {v!r}")] = setting(
        False, "keep the next key published and verified ahead of time"
    )


class PolicyFile(Settings):
    """policies/NAME.toml; every section and setting is optional."""

    description: Any = setting("", "free text about the policy; rotator does not read it", "none")
    key: KeySection = KeySection()
    rotation: RotationSection = RotationSection()
    drain: DrainSection = DrainSection()
    dns: DnsSection = DnsSection()
    selector: SelectorSection = SelectorSection()
    record: RecordSection = RecordSection()
    verify: VerifySection = VerifySection()
    retry: RetrySection = RetrySection()
    tombstone: TombstoneSection = TombstoneSection()
    cname: CnameSection = CnameSection()
    pingpong: PingpongSection = PingpongSection()
    watch: WatchSection = WatchSection()
    standby: StandbySection = StandbySection()

    @model_validator(mode="before")
    @classmethod
    def _empty_tables(cls, raw: Any) -> Any:
        """An empty table of no known section holds no setting to refuse."""
        if not isinstance(raw, Mapping):
            return raw
        return {k: v for k, v in raw.items() if k in cls.model_fields or v != {}}

    @model_validator(mode="after")
    def _ed25519_hashes(self) -> PolicyFile:
        hashes = self.record.hashes
        if self.key.algorithm == "ed25519" and hashes and "sha256" not in hashes:
            raise refuse("ed25519 signatures use sha256; include it", key="[record].hashes")
        return self

    @property
    def bits(self) -> int:
        return self.key.bits or DEFAULT_BITS[self.key.algorithm]
