"""In-memory adapters for fast unit tests of the core (never proof that DNS works)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from rotator.domain.errors import PublishError
from rotator.domain.policy import Policy, parse_policy
from rotator.ports import (
    DelegationView,
    Observation,
    RecordChange,
    SigningEntry,
    TargetResult,
)


class ManualClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.t = start or datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


class FakeDns:
    """A zone store that plays publisher and (two-address) probe."""

    def __init__(self) -> None:
        self.records: dict[str, str] = {}
        self.fail_publish: str | None = None
        self.lagging: set[str] = set()  # names the "secondary" has not caught up on
        self.updates = 0
        # NS delegation: zone -> NS names the parent zone's servers refer to (absent: none)
        self.delegations: dict[str, set[str]] = {}
        # the apex NS RRset the ESP's servers serve in every zone they hold
        self.served_ns: set[str] = {"ns1.esp.test", "ns2.esp.test"}
        self.delegation_error: str | None = None
        self.delegation_queries: list[str] = []
        self.cnames: dict[str, str] = {}  # the customers' CNAMEs, as a resolver sees them
        self.zone_problems: dict[str, str] = {}  # zones the "primary" does not serve

    def apply(self, zone: str, changes: Sequence[RecordChange]) -> str:
        if self.fail_publish:
            raise PublishError(self.fail_publish)
        self.updates += 1
        for c in changes:
            if c.text is None:
                self.records.pop(c.name, None)
            else:
                self.records[c.name] = c.text
        return "fake-primary"

    def zone_problem(self, zone: str) -> str | None:
        return self.zone_problems.get(zone)

    def observe(self, zone: str, name: str) -> list[Observation]:
        out = []
        for ns, addr in (("ns1", "127.0.0.1:53"), ("ns2", "127.0.0.2:53")):
            text = self.records.get(name)
            if ns == "ns2" and name in self.lagging:
                text = None
            out.append(
                Observation(
                    nameserver=ns,
                    address=addr,
                    rcode="NOERROR" if text is not None else "NXDOMAIN",
                    authoritative=True,
                    texts=(text,) if text is not None else (),
                )
            )
        return out

    def cname(self, name: str) -> str | None:
        return self.cnames.get(name)

    def delegation(self, zone: str) -> DelegationView:
        self.delegation_queries.append(zone)
        zone = zone.rstrip(".").lower()
        labels = zone.split(".")
        # the customer's zone: <esp>._domainkey.<domain> minus <esp>._domainkey
        parent = ".".join(labels[2:]) or None
        return DelegationView(
            zone=zone,
            parent=parent,
            referral=frozenset(self.delegations.get(zone, ())),
            served=frozenset(self.served_ns),
            error=self.delegation_error,
        )


class FakeSigner:
    def __init__(self) -> None:
        self.entries: list[SigningEntry] = []
        self.fail: str | None = None
        self.applied = 0
        self.checked: list[SigningEntry] = []

    def locked(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def apply(
        self, entries: Sequence[SigningEntry], check: Sequence[SigningEntry] = ()
    ) -> list[TargetResult]:
        if self.fail:
            return [TargetResult("fake", False, self.fail)]
        self.applied += 1
        self.entries = list(entries)
        self.checked = list(check)
        return [TargetResult("fake", True, "written")]


DEMO: dict[str, dict[str, object]] = {
    "key": {"algorithm": "ed25519"},
    "rotation": {"interval": "60s"},
    "drain": {"max_queue_time": "10s", "multiplier": 3},
    "dns": {"ttl": 5},
    "selector": {"template": "s{hh}{mi}{ss}.{esp}", "esp": "myesp"},
    "retry": {"base": "1s", "max": "8s"},
    "tombstone": {"retention": "20s"},
}


def demo_policy(**overrides: dict[str, object]) -> Policy:
    data = {k: dict(v) for k, v in DEMO.items()}
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    return parse_policy(
        "demo",
        data,
        "policies/demo.toml",
        lambda e: (_ for _ in ()).throw(ValueError("no cron in unit tests")),
    )
