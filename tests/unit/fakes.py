"""In-memory adapters for fast unit tests of the core (never proof that DNS works)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from rotator.domain.errors import ProbeError, PublishError, SignerLockBusy
from rotator.domain.policy import Policy, parse_policy
from rotator.domain.reasons import Reason
from rotator.ports import (
    DelegationView,
    Observation,
    RecordChange,
    SignerChange,
    SigningEntry,
    TargetResult,
    ZoneChanges,
    observe_each,
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
        # whether a zone with lagging names shows the "secondary" at an older SOA serial
        # (a transfer to come); off: both at one serial, as a secondary that will not catch up
        self.serial_lag = False
        self.updates = 0
        self.rounds = True  # a big batch goes out as several changes (UPDATEs), not one
        # NS delegation: zone -> NS names the parent zone's servers refer to (absent: none)
        self.delegations: dict[str, set[str]] = {}
        # the apex NS RRset the ESP's servers serve in every zone they hold
        self.served_ns: set[str] = {"ns1.esp.test", "ns2.esp.test"}
        self.delegation_error: str | None = None
        self.delegation_queries: list[str] = []
        self.cnames: dict[str, str] = {}  # the customers' CNAMEs, as a resolver sees them
        self.zone_problems: dict[str, str] = {}  # zones the "primary" says it does not serve
        self.zone_unanswered: dict[str, str] = {}  # zones it cannot be asked about: why
        self.zone_asks: list[str] = []
        self.unserved: set[str] = set()  # zones no backend is configured for
        # drift behind rotator's back, per server ("ns1", "ns2"): (server, name) -> what it
        # serves instead of the zone's record (None: nothing); servers answering without
        # AA, and servers that do not answer at all
        self.tampered: dict[tuple[str, str], str | None] = {}
        self.lame: set[str] = set()
        self.unreachable: set[str] = set()
        self.cname_failing: set[str] = set()  # names whose CNAME lookup gets no answer
        self.observed: list[str] = []  # every name asked by observe(), in order
        self.batches: list[int] = []  # the size of every observe_many()

    def apply(self, zone: str, changes: Sequence[RecordChange]) -> str:
        if self.fail_publish:
            raise PublishError(self.fail_publish)
        self.updates += 1
        for c in changes:
            # a replaced RRset reaches every server (NOTIFY + IXFR): tampering is undone
            self.tampered = {k: v for k, v in self.tampered.items() if k[1] != c.name}
            if c.text is None:
                self.records.pop(c.name, None)
            else:
                self.records[c.name] = c.text
        return "fake-primary"

    def publish(self, batch: Sequence[ZoneChanges]) -> list[str | PublishError]:
        out: list[str | PublishError] = []
        for zone, changes in batch:
            try:
                out.append(self.apply(zone, changes))
            except PublishError as exc:
                out.append(exc)
        return out

    def zone_problem(self, zone: str) -> str | None:
        self.zone_asks.append(zone)
        if zone in self.zone_unanswered:
            raise PublishError(self.zone_unanswered[zone], Reason.DNS_TIMEOUT)
        return self.zone_problems.get(zone)

    def serves(self, zone: str) -> bool:
        return zone not in self.unserved

    def in_rounds(self, zone: str) -> bool:
        return self.rounds

    def observe(self, zone: str, name: str, deadline: float | None = None) -> list[Observation]:
        self.observed.append(name)
        out = []
        for ns, addr in (("ns1", "127.0.0.1:53"), ("ns2", "127.0.0.2:53")):
            text = self.records.get(name)
            if ns == "ns2" and name in self.lagging:
                text = None
            text = self.tampered.get((ns, name), text)
            if ns in self.unreachable:
                out.append(Observation(ns, addr, error="timeout after 3s"))
                continue
            out.append(
                Observation(
                    nameserver=ns,
                    address=addr,
                    rcode="NOERROR" if text is not None else "NXDOMAIN",
                    authoritative=ns not in self.lame,
                    texts=(text,) if text is not None else (),
                )
            )
        return out

    def observe_many(
        self, queries: Sequence[tuple[str, str]], deadline: float | None = None
    ) -> list[list[Observation] | ProbeError]:
        self.batches.append(len(queries))
        return observe_each(self, queries, deadline)

    def serials(
        self, zones: Sequence[str], deadline: float | None = None
    ) -> dict[str, list[int | None]]:
        out: dict[str, list[int | None]] = {}
        for zone in zones:
            suffix = "." + zone.rstrip(".")
            behind = self.serial_lag and any(n.rstrip(".").endswith(suffix) for n in self.lagging)
            out[zone] = [
                None if ns in self.unreachable else self.updates - (ns == "ns2" and behind)
                for ns in ("ns1", "ns2")
            ]
        return out

    def cname(self, name: str, deadline: float | None = None) -> str | None:
        if name in self.cname_failing:
            raise ProbeError(f"cannot look up the CNAME {name}: SERVFAIL")
        return self.cnames.get(name)

    def delegation(self, zone: str, deadline: float | None = None) -> DelegationView:
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
        self.by_key: dict[str, list[SigningEntry]] = {}
        self.fail: str | None = None
        self.applied = 0
        self.checked: list[SigningEntry] = []
        self.synced = False
        self.stamp_position: int | None = None
        self.wipe: Callable[[str], bool] = lambda key_id: False  # the last apply's
        self.sweeps = 0
        self.withdrawn: list[set[str]] = []  # the keys of each withdraw()
        self.busy: str | None = None  # locked() gives up with this reason

    def sweep(self) -> int:
        self.sweeps += 1
        return 0

    def problems(
        self, entries: Sequence[SigningEntry], beside: Sequence[SigningEntry] = ()
    ) -> list[str]:
        return []

    def stamp(self, position: int | None) -> None:
        self.stamp_position = position

    def stamped(self) -> int | None:
        return self.stamp_position

    def trust(self) -> None:
        self.synced = True

    @property
    def entries(self) -> list[SigningEntry]:
        return [e for group in self.by_key.values() for e in group]

    def locked(self) -> contextlib.AbstractContextManager[None]:
        if self.busy is not None:
            raise SignerLockBusy(self.busy)
        return contextlib.nullcontext()

    def apply(
        self,
        entries: Callable[[], Sequence[SigningEntry]],
        check: Sequence[SigningEntry] = (),
        wipe: Callable[[str], bool] = lambda key_id: False,
    ) -> list[TargetResult]:
        self.wipe = wipe
        if self.fail:
            self.synced = False
            return [TargetResult("fake", False, self.fail)]
        self.synced = True
        self.applied += 1
        self.by_key = {}
        for e in entries():
            self.by_key.setdefault(e.key_id, []).append(e)
        self.checked = list(check)
        return [TargetResult("fake", True, "written")]

    def withdraw(
        self,
        removed: Sequence[SigningEntry],
        entries: Callable[[], Sequence[SigningEntry]],
        wipe: bool,
    ) -> list[TargetResult]:
        # as a real target: the tables from what still signs, no key file sent, the
        # removed keys' files wiped (or held), whatever this process wrote before
        gone = {e.key_id for e in removed}
        self.wipe = lambda key_id: wipe and key_id in gone
        self.withdrawn.append(gone)
        if self.fail:
            self.synced = False
            return [TargetResult("fake", False, self.fail)]
        self.applied += 1
        self.by_key = {}
        for e in entries():
            self.by_key.setdefault(e.key_id, []).append(e)
        return [TargetResult("fake", True, "written")]

    def change(
        self, change: SignerChange, check: Sequence[SigningEntry] = ()
    ) -> list[TargetResult]:
        # O(change), as a real target that has been written once: the complete set is
        # never read
        if self.fail:
            self.synced = False
            return [TargetResult("fake", False, self.fail)]
        if not self.synced:  # as a real target: the first write of a process is complete
            return self.apply(change.everything, check)
        self.applied += 1
        for e in (*change.removed, *change.added):
            self.by_key.pop(e.key_id, None)
        for e in change.added:
            self.by_key.setdefault(e.key_id, []).append(e)
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
