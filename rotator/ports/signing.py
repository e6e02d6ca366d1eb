"""The signer end's types: what one signature is, the complete signing set (as a list or a
stream), what one activation changes, and the Signer that every target sits behind."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar, runtime_checkable


@dataclass(frozen=True, slots=True)  # a million of them at a first complete write
class SigningEntry:
    """One signature a signer adds: mail matching `signing_pattern` is signed with d=domain,
    s=selector and the key `key_id` (rotator's own copy at key_path)."""

    key_id: str
    domain: str
    selector: str
    key_path: str  # text, not Path: a million entries are built at start-up
    signing_pattern: str  # "*@example.com" or "*@*.example.com"
    algorithm: str = "rsa"  # rsa | ed25519
    second: bool = False  # the ESP's feedback-loop signature, added beside the customer's
    # where its public key is served (for probes that verify a signature on the spot)
    zone: str = ""
    record_name: str = ""


@dataclass(frozen=True)
class TargetResult:
    """One signer target's outcome: files written, reloaded, probed (or why not)."""

    target: str
    ok: bool
    detail: str  # "signs with s=... d=... (verified)", "probe off: not proven", or the error
    proven: bool = False  # a live signer was seen to sign with the keys checked

    def as_json(self) -> dict[str, object]:
        return {"target": self.target, "ok": self.ok, "proven": self.proven, "detail": self.detail}


class SigningRow(NamedTuple):
    """One signature an active key makes, as the store reads it in bulk."""

    key_id: str
    domain: str
    selector: str
    algorithm: str
    zone: str
    record_name: str
    signing_pattern: str
    second: bool  # an ESP key signing for a customer that carries its signature


SIGNING_KEY_COLUMNS = ("key_id", "domain", "selector", "algorithm", "zone", "record_name")

T = TypeVar("T")


def signing_row(e: SigningEntry) -> tuple[Any, ...]:
    """An entry as SigningRow-shaped tuple (what SigningStream.render streams)."""
    return (
        e.key_id,
        e.domain,
        e.selector,
        e.algorithm,
        e.zone,
        e.record_name,
        e.signing_pattern,
        int(e.second),
    )


def sender_order(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A SigningRow-shaped tuple's place in every signer table: pattern, the customer's
    own signature before the ESP's, domain, selector, key id."""
    return (row[6], int(row[7]), row[1], row[2], row[0])


@runtime_checkable
class SigningStream(Protocol):
    """The complete signing set, for a signer table at a million identities: called, it
    is a list of entries; rendered, a stream of SigningRow-shaped tuples in sender order
    (pattern, second, domain, selector, key id), read in bounded memory."""

    def __call__(self) -> Sequence[SigningEntry]: ...

    def render(self, fn: Callable[[Iterator[tuple[Any, ...]]], T]) -> T:
        """fn(rows): every row's MAC checked, all of them from one state of the database
        (fn is called again if the database changed meanwhile: it must start afresh)."""
        ...

    def key_path(self, key_id: str) -> str:
        """rotator's own copy of a key (what SigningEntry.key_path holds)."""
        ...


class RowBuffer(Protocol):
    """The signing set a write rendered, kept for the next change to patch (SigningRow-shaped
    tuples in sender order): an activation among a million identities then reads neither
    the store nor a million MACs."""

    def add(self, row: tuple[Any, ...]) -> None: ...

    def tee(self, rows: Iterator[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
        """Each of `rows`, added as it passes."""
        ...

    def rows(self) -> Iterator[tuple[Any, ...]]:
        """Every row added, in order (one reader at a time, once adding is done)."""
        ...

    def close(self) -> None: ...


class ListRows:
    """A RowBuffer in memory (tests, and where no file-backed one is configured)."""

    def __init__(self) -> None:
        self.items: list[tuple[Any, ...]] = []

    def add(self, row: tuple[Any, ...]) -> None:
        self.items.append(row)

    def tee(self, rows: Iterator[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
        for row in rows:
            self.items.append(row)
            yield row

    def rows(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.items)

    def close(self) -> None:
        self.items = []


@dataclass(frozen=True)
class SignerChange:
    """What one activation changes: the entries that start signing and the keys that stop.
    `everything` reads the complete set from the log, for whatever needs it (a target
    written for the first time, or a table that lists every key); the change itself is
    O(keys switched), whatever the number of identities."""

    added: tuple[SigningEntry, ...]
    removed: tuple[SigningEntry, ...]  # the entries of the keys that stop signing
    everything: Callable[[], Sequence[SigningEntry]]


class Signer(Protocol):
    """Every signer target rotator keeps in step (one OpenDKIM, or a fleet of MTAs)."""

    def locked(self) -> AbstractContextManager[None]:
        """Exclusive across processes (daemon and operator commands): read the state and
        write the signers inside it. The wait for it is bounded: SignerLockBusy naming
        the holder (pid, command, since when) once it passed."""
        ...

    def apply(
        self,
        entries: Callable[[], Sequence[SigningEntry]],
        check: Sequence[SigningEntry] = (),
        wipe: Callable[[str], bool] = lambda key_id: False,
    ) -> list[TargetResult]:
        """Make every target sign exactly `entries()`: files written atomically (keys
        before the tables naming them), reload, then a probe through the live signer for
        each key in `check`. `entries` is called at most once, and only if a target needs
        it (with none configured, a million entries are not read for nothing). One result
        per target; a target's failure never raises. The key files of keys that left a
        target stay there for its grace after the reload and probe (workers on the old
        configuration still read them), except those of keys `wipe` names (compromised),
        wiped before the reload."""
        ...

    def withdraw(
        self,
        removed: Sequence[SigningEntry],
        entries: Callable[[], Sequence[SigningEntry]],
        wipe: bool,
    ) -> list[TargetResult]:
        """Take the keys of `removed` out of every target: tables rewritten from
        `entries()` (what still signs), no key file sent, reload. Their key files are wiped
        at once with `wipe` (a compromise), else held for the target's grace. One result
        per target; a target's failure never raises."""
        ...

    def problems(
        self, entries: Sequence[SigningEntry], beside: Sequence[SigningEntry] = ()
    ) -> list[str]:
        """Why a target could not sign the senders of `entries` beside what it signs now
        (`beside`: a few of those senders, not all), one line each; empty: every target
        can. Asked before a sender is recorded: a target leaves out a sender it cannot
        sign rather than refusing the others with it."""
        ...

    def sweep(self) -> int:
        """Wipe the key files whose grace has run since they left (every tick); how many."""
        ...

    def change(
        self, change: SignerChange, check: Sequence[SigningEntry] = ()
    ) -> list[TargetResult]:
        """As apply(change.everything()), writing only what the change touches where a
        target's last write is known to have landed."""
        ...

    def stamp(self, position: int | None) -> None:
        """Every target holds the signing set of the log at `position` (None: a write is
        under way, or failed: nobody knows what they hold)."""
        ...

    def stamped(self) -> int | None:
        """The last stamp; None if there is none or a write did not finish."""
        ...

    def trust(self) -> None:
        """Take the stamp's word at start-up: the targets hold what the log says."""
        ...
