"""The event store's contract as roles: appending, reading the log's streams, reading the
projections, the audit chain, the signing set and the monitoring aggregates. Each consumer
names the narrowest role it needs; an implementation provides them all (EventStore)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ..domain.events import Event
from ..domain.model import IdentityState, KeyState
from ..domain.states import State
from .leadership import Fencing
from .monitoring import StoreCounts
from .signing import SigningRow


@dataclass(frozen=True)
class StoredEvent:
    position: int
    stream_id: str
    version: int
    event: Event
    hash: str
    prev_hash: str


@dataclass(frozen=True)
class LogFilter:
    identity: str | None = None
    domain: str | None = None
    selector: str | None = None
    key_id: str | None = None
    types: tuple[str, ...] = ()
    identities: tuple[str, ...] = ()  # e.g. every identity of one customer
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after_position: int = 0
    limit: int | None = None


class Appended(Protocol):
    """The stored events (a list) plus the states the fold computed for them."""

    keys: dict[str, KeyState]
    identities: dict[str, IdentityState]

    def __iter__(self) -> Iterator[StoredEvent]: ...

    def __len__(self) -> int: ...


@dataclass
class AuditReport:
    events: int = 0
    problem: str | None = None  # the first break of the chain
    sealed: int = 0  # events carrying a MAC
    bad_macs: list[str] = field(default_factory=list)
    anchor: str | None = None  # what the anchor says about the tail, if anything is wrong
    head: str | None = None  # the projection head does not seal the log's last event

    @property
    def ok(self) -> bool:
        return (
            self.problem is None and not self.bad_macs and self.anchor is None and self.head is None
        )


# what one pass of a tick takes on (keys due, identities due): a tick makes up to eight
# passes, so a backlog of 10,000 rotations goes in one tick
DUE_BATCH = 5000


class EventAppender(Protocol):
    def append(self, events: Sequence[Event], expected: dict[str, int]) -> Appended:
        """Append atomically; `expected` maps stream_id -> its version before this append.
        Raises ConcurrencyError if any stream moved, IllegalTransition if an event does not
        apply; in both cases nothing is written. Returns the stored events and the folded
        key and identity states they produced."""
        ...


class StreamReader(Protocol):
    """The log itself, in position order."""

    def stream_version(self, stream_id: str) -> int: ...

    def events(self, flt: LogFilter | None = None) -> Iterator[StoredEvent]: ...

    def head(self) -> tuple[int, str] | None:
        """(position, hash) of the newest event."""
        ...

    def info(self) -> dict[str, Any]: ...


class ProjectionReader(Protocol):
    """The key and identity states the log folds into."""

    def key(self, key_id: str) -> KeyState | None: ...

    def keys_by_id(self, key_ids: Collection[str]) -> dict[str, KeyState]:
        """The keys among `key_ids` that exist, read in a few statements (a step over a
        thousand keys must not read them one by one)."""
        ...

    def keys_of(self, identities: Collection[str]) -> dict[str, list[KeyState]]:
        """Every key of each of `identities` (destroyed ones too), oldest first."""
        ...

    def identities_named(self, names: Collection[str]) -> dict[str, IdentityState]:
        """The identities among `names` that exist, read in a few statements."""
        ...

    def list_keys(
        self, identity: str | None = None, state: State | None = None
    ) -> list[KeyState]: ...

    def due_keys(self, now: datetime, limit: int = DUE_BATCH) -> list[KeyState]: ...

    def next_due(self, skip: Collection[str] = ()) -> datetime | None:
        """The earliest next action of any key (but those in `skip`) or identity."""
        ...

    def identity(self, identity: str) -> IdentityState | None: ...

    def identity_sending(self, domain: str) -> IdentityState | None:
        """The identity that signs `domain`'s mail (its one owner), if any."""
        ...

    def identity_covering(self, domain: str) -> IdentityState | None:
        """A live identity whose `*@*.PARENT` pattern signs `domain`'s mail, if any."""
        ...

    def identities_under(self, parents: set[str]) -> list[IdentityState]:
        """Live identities whose sending domain is a subdomain of one of `parents`."""
        ...

    def identities(self) -> list[IdentityState]: ...

    def identity_page(self, after: str, limit: int) -> list[IdentityState]:
        """Up to `limit` identities named after `after`, in name order (retired ones too)."""
        ...

    def senders(self, limit: int) -> list[IdentityState]:
        """Up to `limit` live identities that sign mail of their own (a signing pattern)."""
        ...

    def live_key_ids(self) -> set[str]:
        """The ids of every key not destroyed."""
        ...

    def count_keys(self, state: str, up_to: int | None = None) -> int:
        """How many keys are in `state`; with `up_to`, counting stops there."""
        ...

    def companions(self, identity: str) -> list[IdentityState]:
        """The dual-algorithm companions of an identity."""
        ...

    def scheduled_work(
        self, now: datetime, policy: str | None = None, after: datetime | None = None
    ) -> tuple[int, int]:
        """(revocations, replacements) due by `now` that no emergency set off; only those
        due after `after` and of `policy` when given."""
        ...

    def scheduled_policies(self, now: datetime) -> set[str]:
        """The policies of the work scheduled_work(now) counts."""
        ...

    def esp_customers(self, esp_identity: str) -> list[IdentityState]:
        """The identities whose mail also carries `esp_identity`'s signature."""
        ...

    def due_identities(self, now: datetime, limit: int = DUE_BATCH) -> list[IdentityState]: ...

    def selectors(self, domain: str) -> set[str]: ...

    def watch_keys(self, low: str, high: str | None) -> list[KeyState]:
        """Active and draining keys, low <= key_id < high (None: to the end): the watch."""
        ...


@dataclass(frozen=True)
class OverviewCounts:
    keys: dict[str, int]  # keys by state; a state no key is in is absent
    identities: int  # identities not removed


class OverviewReader(Protocol):
    """What the status page's overview reads: aggregates and the few rows that hold a
    problem, never every key or identity."""

    def overview_counts(self) -> OverviewCounts:
        """Keys by state (one GROUP BY) and the identities not removed."""
        ...

    def problem_keys(self) -> list[KeyState]:
        """The keys with a last error or a drift finding, whatever their state, in
        list_keys order."""
        ...

    def problem_identities(self) -> list[IdentityState]:
        """The identities with a notice or a customer-DNS problem (removed ones too), in
        name order."""
        ...

    def search_identities(self, text: str, limit: int) -> tuple[list[IdentityState], int]:
        """The first `limit` identities, in name order, whose name, domain or customer
        holds `text` (lower-case, compared with str.lower of each), and how many match."""
        ...


class StoreCounter(Protocol):
    def monitoring_counts(self, per_identity: bool = False) -> StoreCounts:
        """Aggregates for the metrics endpoint: a few rows per state, policy and mode,
        whatever the number of identities (plus one row per identity if asked)."""
        ...


class SigningSetSource(Protocol):
    """Which keys sign for which senders, and whether that may have changed."""

    def signing_rows(self) -> Iterator[SigningRow]:
        """Every signature the active keys make (the complete signing set)."""
        ...

    def signing_stream(self) -> Iterator[tuple[Any, ...]]:
        """signing_rows as tuples in sender order, their MACs not checked."""
        ...

    def check_signing(self, executor: Executor | None, workers: int) -> Callable[[], None]:
        """Start checking the MAC of every row signing_stream reads (in the worker
        processes if given); the returned call waits and raises StoreError for a row
        that was edited."""
        ...

    def signing_set_changed_since(self, position: int) -> bool:
        """Whether an event after `position` changes which keys sign for which senders
        (domain.signing.SIGNING_SET_EVENTS)."""
        ...

    def signing_changed_since(self, position: int) -> bool:
        """Whether an event after `position` may change what the signers hold
        (domain.signing.SIGNING_EVENTS)."""
        ...

    def data_version(self) -> int:
        """A number that changes whenever another connection commits."""
        ...

    def head(self) -> tuple[int, str] | None:
        """(position, hash) of the newest event: the position the set was read at."""
        ...


class AuditLog(Protocol):
    """The hash chain and what is checked against it (MACs, the anchor, the projection)."""

    def head(self) -> tuple[int, str] | None:
        """(position, hash) of the newest event: the value to keep elsewhere."""
        ...

    def verify_chain(self) -> tuple[int, str | None]:
        """Recompute the hash chain: (events checked, the first problem or None)."""
        ...

    def audit(self) -> AuditReport:
        """The chain, every MAC (with the audit key), the anchor and the projection head."""
        ...

    def rebuild(self, check_only: bool = False) -> list[str]:
        """Replay the log into the projection: the differences with the live one; unless
        `check_only`, the live one is replaced."""
        ...

    def consistency_problem(self) -> str | None:
        """None if the projection has folded exactly the log's last event (and the anchor
        agrees); else what is wrong, before anything acts on it."""
        ...

    def keyed(self) -> bool:
        """Whether MACs are checked (the audit key could be read)."""
        ...

    def anchored(self) -> str | None:
        """Where the anchor is kept, if it holds a line to check the log against."""
        ...


class EventStore(
    EventAppender,
    Fencing,
    StreamReader,
    ProjectionReader,
    OverviewReader,
    StoreCounter,
    SigningSetSource,
    AuditLog,
    Protocol,
):
    """Every role: what an implementation provides and the composition root holds."""

    def close(self) -> None: ...
