"""Small Protocols the application service talks to; adapters/ implement them."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from ..domain.events import Event
from ..domain.model import IdentityState, KeyState
from ..domain.policy import Policy
from ..domain.states import State
from ..domain.verification import DelegationView as DelegationView
from ..domain.verification import Observation as Observation  # re-exported for adapters
from .monitoring import StoreCounts as StoreCounts
from .signing import SIGNING_KEY_COLUMNS as SIGNING_KEY_COLUMNS
from .signing import ListRows as ListRows
from .signing import RowBuffer as RowBuffer
from .signing import Signer as Signer
from .signing import SignerChange as SignerChange
from .signing import SigningEntry as SigningEntry
from .signing import SigningRow as SigningRow
from .signing import SigningStream as SigningStream
from .signing import TargetResult as TargetResult
from .signing import sender_order as sender_order
from .signing import signing_row as signing_row


class Clock(Protocol):
    def now(self) -> datetime: ...


# A policy by name; raises NotFound (naming the known ones) for an unknown name.
PolicySource = Callable[[str], Policy]


class Workers(Protocol):
    """Processes for CPU-bound work (key generation), kept between ticks."""

    workers: int

    def executor(self) -> Executor: ...

    def shutdown(self) -> None: ...


class DaemonLock(Protocol):
    """The one-daemon-per-database lock, as operator commands see it."""

    def acquire(self) -> None:
        """Take it, or raise AlreadyRunning naming the holder."""
        ...

    def release(self) -> None: ...

    def wake_holder(self) -> int | None:
        """Ask the daemon holding the lock to tick now; its pid, or None if none runs."""
        ...


# --- DNS ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordChange:
    """Replace the TXT RRset at `name` with one record `text`, or delete it (text None)."""

    name: str  # absolute owner name, e.g. "nov2026.myesp._domainkey.example.com."
    ttl: int
    text: str | None


class Publisher(Protocol):
    def apply(self, zone: str, changes: Sequence[RecordChange]) -> str:
        """Apply all changes to `zone` (idempotent). Returns the server that accepted them.
        Raises PublishError(reason) if any part was not accepted."""
        ...

    def zone_problem(self, zone: str) -> str | None:
        """None if the primary serves `zone` (an authoritative SOA for exactly that name),
        else what is wrong, to warn about before any UPDATE is refused."""
        ...


class NameserverProbe(Protocol):
    """Every call ends by its `deadline` (a time.monotonic() instant; None: the probe's own
    bound), each query given only the time left: a check of a customer's slow DNS cannot
    hold its thread past its deadline."""

    def observe(self, zone: str, name: str, deadline: float | None = None) -> list[Observation]:
        """Query every address of every authoritative nameserver of `zone` directly (RD=0)
        for the TXT at `name`. Raises ProbeError if the nameserver set cannot be found."""
        ...

    def cname(self, name: str, deadline: float | None = None) -> str | None:
        """The CNAME target of `name` as a resolver sees it (absolute, lower case), or None
        if the answer is that there is none (NXDOMAIN, NODATA). ProbeError when no answer
        came (timeout, SERVFAIL): that proves nothing either way."""
        ...

    def delegation(self, zone: str, deadline: float | None = None) -> DelegationView:
        """Ask the parent zone's authoritative servers (RD=0) which NS they hand out for
        `zone`, and the zone's own NS set. Never raises: problems go in .error."""
        ...


# --- keys and signer ------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratedKey:
    public_key_b64: str  # the p= value
    fingerprint: str  # sha256 hex of the public key
    path: Path


class KeyStore(Protocol):
    def generate(self, key_id: str, algorithm: str, bits: int) -> GeneratedKey: ...

    def describe(self, pem: bytes) -> tuple[str, int, bytes]:
        """(algorithm, bits, public key material for p=) of a PEM private key; InputError
        if it is not an unencrypted RSA or Ed25519 key."""
        ...

    def customer_key(self, pem: bytes) -> tuple[str, int, bytes, bytes]:
        """A customer-supplied key checked (RFC 8301) and re-serialised: (algorithm, bits,
        public material, PKCS#8 PEM to store); InputError naming what is wrong."""
        ...

    def write(self, key_id: str, pem: bytes) -> Path:
        """Store an imported private key (mode 0600, atomically)."""
        ...

    def path(self, key_id: str) -> Path: ...

    def key_file(self, key_id: str) -> str:
        """path() as text: built for every active key at start-up, where a Path costs."""
        ...

    def exists(self, key_id: str) -> bool: ...

    def destroy(self, key_id: str) -> bool:
        """Overwrite with zeros, fsync, unlink. Idempotent; True if a file was wiped."""
        ...

    def stored_ids(self) -> list[str]: ...

    def wipe_leftovers(self) -> int:
        """Wipe the temp files interrupted writes left behind; how many there were."""
        ...


class KeyPool(Protocol):
    """Keys generated ahead of need, kept apart until an identity takes one."""

    def add(self, key_id: str, algorithm: str, bits: int) -> str:
        """Generate one pooled key (in a worker process); its fingerprint."""
        ...

    def inventory(self) -> dict[str, tuple[str, int]]:
        """key_id -> (algorithm, bits) of every pooled key."""
        ...

    def counts(self) -> dict[tuple[str, int], int]: ...

    def take(self, algorithm: str, bits: int, wanted: int) -> list[tuple[str, GeneratedKey]]:
        """Up to `wanted` pooled keys of this kind, moved into the key store."""
        ...

    def discard(self, keep: set[str] | None = None) -> list[str]:
        """Wipe the pooled keys (those not in `keep`); their ids."""
        ...


# --- event store -----------------------------------------------------------------------------


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


# what one pass of a tick takes on (keys due, identities due): a tick makes up to eight
# passes, so a backlog of 10,000 rotations goes in one tick
DUE_BATCH = 5000


class EventStore(Protocol):
    def append(self, events: Sequence[Event], expected: dict[str, int]) -> Appended:
        """Append atomically; `expected` maps stream_id -> its version before this append.
        Raises ConcurrencyError if any stream moved, IllegalTransition if an event does not
        apply; in both cases nothing is written. Returns the stored events and the folded
        key and identity states they produced."""
        ...

    def key(self, key_id: str) -> KeyState | None: ...

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

    def senders(self, limit: int) -> list[IdentityState]:
        """Up to `limit` live identities that sign mail of their own (a signing pattern)."""
        ...

    def live_key_ids(self) -> set[str]:
        """The ids of every key not destroyed."""
        ...

    def count_keys(self, state: str, up_to: int | None = None) -> int:
        """How many keys are in `state`; with `up_to`, counting stops there."""
        ...

    def signing_set_changed_since(self, position: int) -> bool:
        """Whether an event after `position` changes which keys sign for which senders."""
        ...

    def signing_changed_since(self, position: int) -> bool:
        """Whether an event after `position` may change what the signers hold."""
        ...

    def head(self) -> tuple[int, str] | None:
        """(position, hash) of the newest event."""
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

    def data_version(self) -> int:
        """A number that changes whenever another connection commits."""
        ...

    def esp_customers(self, esp_identity: str) -> list[IdentityState]:
        """The identities whose mail also carries `esp_identity`'s signature."""
        ...

    def due_identities(self, now: datetime, limit: int = DUE_BATCH) -> list[IdentityState]: ...

    def selectors(self, domain: str) -> set[str]: ...

    def events(self, flt: LogFilter | None = None) -> Iterator[StoredEvent]: ...

    def stream_version(self, stream_id: str) -> int: ...

    def info(self) -> dict[str, Any]: ...

    def monitoring_counts(self, per_identity: bool = False) -> StoreCounts:
        """Aggregates for the metrics endpoint: a few rows per state, policy and mode,
        whatever the number of identities (plus one row per identity if asked)."""
        ...

    def watch_keys(self, low: str, high: str | None) -> list[KeyState]:
        """Active and draining keys, low <= key_id < high (None: to the end): the watch."""
        ...
