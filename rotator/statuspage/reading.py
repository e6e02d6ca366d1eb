"""What the pages show, built from the app's read side: small frozen dataclasses the
renderers take, and the one place that asks the store and the queries for them.

The reader is a Protocol so that the HTTP layer hands in its App (or anything with a
store, the queries and the safety valve) without this package importing either."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ..app.queries import Queries, StatusRow
from ..app.webhooks import Subscription
from ..domain import events as ev
from ..domain.model import IdentityState
from ..domain.states import State
from ..ports import LogFilter
from ..ports.store import OverviewReader, ProjectionReader, StoredEvent, StreamReader
from .timeline import KeyBar, key_bar

MAX_MATCHES = 200  # a search shows this many identities at most (and how many more)


class StatusStore(ProjectionReader, OverviewReader, StreamReader, Protocol):
    """The projections, their aggregates and the log: what the pages read, nothing that
    writes."""


class HeldSource(Protocol):
    def held(self) -> str | None: ...


class ParkedSource(Protocol):
    def parked(self) -> list[Subscription]: ...


class StatusReader(Protocol):
    @property
    def store(self) -> StatusStore: ...

    @property
    def queries(self) -> Queries: ...

    @property
    def safety(self) -> HeldSource: ...

    @property
    def webhooks(self) -> ParkedSource: ...


@dataclass(frozen=True)
class Problem:
    # parked, failing, drift, customer DNS, notice, safety stop, paced, webhook parked
    kind: str
    name: str  # the identity ("" for the safety valve and webhooks: the whole fleet's)
    selector: str
    reason: str
    code: str  # the reason code ("" when there is none)
    since: datetime | None


@dataclass(frozen=True)
class IdentitySummary:
    identity: str
    domain: str
    customer: str
    policy: str
    mode: str
    active_selector: str
    pending_selector: str
    rotation_due_at: datetime | None
    retired_at: datetime | None


@dataclass(frozen=True)
class OverviewData:
    now: datetime
    counts: tuple[tuple[str, int], ...]  # every key state, in lifecycle order
    identities: int
    problems: tuple[Problem, ...]
    query: str = ""
    matches: tuple[IdentitySummary, ...] = ()
    more: int = 0  # matches beyond those shown


@dataclass(frozen=True)
class HistoryLine:
    at: datetime
    event: str
    selector: str
    detail: str


@dataclass(frozen=True)
class IdentityData:
    now: datetime
    summary: IdentitySummary
    bars: tuple[KeyBar, ...]
    problems: tuple[Problem, ...]
    history: tuple[HistoryLine, ...]


def build_overview(reader: StatusReader, now: datetime, query: str = "") -> OverviewData:
    """From aggregates and the rows with a problem: O(problems + matches shown), whatever
    the number of keys (a search is one pass over the identities' names in the store)."""
    store = reader.store
    totals = store.overview_counts()
    counts = tuple((s.value, totals.keys.get(s.value, 0)) for s in State)
    matches: list[IdentitySummary] = []
    more = 0
    want = query.strip().lower()
    if want:
        found, total = store.search_identities(want, MAX_MATCHES)
        matches = [_summary(reader, i) for i in found]
        more = max(0, total - MAX_MATCHES)
    return OverviewData(
        now, counts, totals.identities, tuple(problems(reader)), query.strip(),
        tuple(matches), more,
    )  # fmt: skip


def build_identity(reader: StatusReader, name: str, now: datetime) -> IdentityData | None:
    """The identity's page, or None if there is no such identity."""
    store = reader.store
    ident = store.identity(name.strip().rstrip(".").lower())
    if ident is None:
        return None
    keys = sorted(store.list_keys(ident.identity), key=lambda k: (k.created_at, k.key_id))
    bars = []
    for k in keys:
        bar = key_bar(_key_events(store.events(LogFilter(key_id=k.key_id))), now)
        if bar is not None:
            bars.append(bar)
    mine = [p for p in problems(reader, ident.identity) if p.name == ident.identity]
    history = [
        _line(s.event)
        for s in store.events(LogFilter(identity=ident.identity))
        if not isinstance(s.event, ev.SafetyEvent)
    ]
    return IdentityData(now, _summary(reader, ident), tuple(bars), tuple(mine), tuple(history))


def problems(reader: StatusReader, identity: str | None = None) -> list[Problem]:
    """Every current problem: parked and failing steps, drift, broken customer DNS,
    deferral notices, the safety valve and parked webhooks; each with since when it has
    been so."""
    store = reader.store
    out: list[Problem] = []
    held = reader.safety.held()
    if held and identity is None:
        kind = "paced" if held.startswith("paced") else "safety stop"
        since = None
        if kind == "safety stop":
            stops = list(store.events(LogFilter(types=("SafetyStopped",))))
            since = stops[-1].event.at if stops else None
        out.append(Problem(kind, "", "-", held, "", since))
    if identity is None:
        for sub in reader.webhooks.parked():  # by id: a URL may hold the receiver's token
            reason = f"webhook {sub.id}, at log position {sub.parked_at}: {sub.parked}"
            out.append(Problem("webhook parked", "", "-", reason, "", sub.parked_since))
    for row in reader.queries.problem_rows():
        name = row.name
        if identity is not None and name != identity:
            continue
        if row.last_error and row.key_id:
            kind = "parked" if "(parked" in row.next_action else "failing"
            since = _failing_since(store, row.key_id)
            out.append(_from_row(kind, row, row.last_error, since))
        if row.drift and row.key_id:
            since = _drift_since(store, row.key_id)
            out.append(Problem("drift", name, row.selector, row.drift, "drift", since))
    for row in reader.queries.problem_notices():
        name = row.name
        if (identity is not None and name != identity) or not row.last_error:
            continue
        types = ("CustomerDnsBroken",) if row.state == "customer DNS" else ("RotationDeferred",)
        since = _last_time(store, name or row.domain, types)
        out.append(_from_row(row.state, row, row.last_error, since))
    return out


def _from_row(kind: str, row: StatusRow, reason: str, since: datetime | None) -> Problem:
    return Problem(
        kind,
        row.name or row.domain,
        row.selector,
        reason,
        row.code.value if row.code else "",
        since,
    )


# events that neither end a failing step nor a drift: the watch's findings beside a
# failure, a resume that retries the same step
_FAILING = ("ActionFailed", "StepParked")
_NEUTRAL = (*_FAILING, "StepResumed", "DriftDetected", "DriftResolved")


def _failing_since(store: StatusStore, key_id: str) -> datetime | None:
    """The first failure after the key's last successful step."""
    start = None
    for stored in store.events(LogFilter(key_id=key_id)):
        name = type(stored.event).__name__
        if name in _FAILING:
            start = start or stored.event.at
        elif name not in _NEUTRAL:
            start = None
    return start


def _drift_since(store: StatusStore, key_id: str) -> datetime | None:
    """The first drift seen after the last one resolved."""
    start = None
    for stored in store.events(LogFilter(key_id=key_id, types=_NEUTRAL[-2:])):
        resolved = isinstance(stored.event, ev.DriftResolved)
        start = None if resolved else (start or stored.event.at)
    return start


def _last_time(store: StatusStore, identity: str, types: tuple[str, ...]) -> datetime | None:
    found = list(store.events(LogFilter(identity=identity, types=types)))
    return found[-1].event.at if found else None


def _key_events(stored: Iterable[StoredEvent]) -> list[ev.KeyEvent]:
    return [s.event for s in stored if isinstance(s.event, ev.KeyEvent)]


def _summary(reader: StatusReader, i: IdentityState) -> IdentitySummary:
    store = reader.store
    active = store.key(i.active_key) if i.active_key else None
    pending = store.key(i.pending_key) if i.pending_key else None
    return IdentitySummary(
        i.identity,
        i.domain,
        i.customer,
        i.policy,
        i.mode.value,
        active.selector if active else "-",
        pending.selector if pending else "-",
        i.rotation_due_at,
        i.retired_at,
    )


def _line(event: ev.Event) -> HistoryLine:
    selector = event.selector if isinstance(event, ev.KeyEvent) else "-"
    detail = event.reason
    if isinstance(event, ev.ActionFailed | ev.StepParked):
        detail = event.error
    return HistoryLine(event.at, type(event).__name__, selector, detail)
