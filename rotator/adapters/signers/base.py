"""What every signer format shares: the rendered file set and the grouping by sender."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol, runtime_checkable

from ...domain.errors import SignerError
from ...ports import SigningEntry, sender_order, signing_row

HEADER = "Written by rotator. Do not edit: it is rewritten on every key activation."

# What a signer's file may hold unescaped: plain DNS names and the two sender patterns.
# Whatever could end a key, a quote or a line in some format is refused, never escaped.
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?"
PLAIN_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
SENDER_PATTERN = re.compile(rf"\*@(?:\*\.)?{_LABEL}(?:\.{_LABEL})*")


def plain_name(fmt: str, value: str, what: str) -> str:
    """`value` if it is a plain DNS name, else SignerError naming the format and field."""
    if not PLAIN_NAME.fullmatch(value):
        raise SignerError(f"{fmt}: refusing {what} {value!r}: not a plain DNS name")
    return value


# The bytes of rotator's copy of a key (PKCS#8 PEM), read only while a target is written.
KeyReader = Callable[[SigningEntry], bytes]


# A table held whole, or spooled to a private temp file (a million lines)
TableData = bytes | BinaryIO


class Spool:
    """Lines written to a private temp file a chunk at a time: a table of a million lines
    is never one string in memory."""

    CHUNK = 8192  # lines

    def __init__(self) -> None:
        self.file: BinaryIO = tempfile.TemporaryFile()  # noqa: SIM115 - handed on open
        self._lines: list[str] = []

    def write(self, line: str) -> None:
        self._lines.append(line)
        if len(self._lines) >= self.CHUNK:
            self._flush()

    def _flush(self) -> None:
        self.file.write("".join(self._lines).encode())
        self._lines.clear()

    def done(self) -> BinaryIO:
        """The file, rewound to be read."""
        self._flush()
        self.file.flush()
        self.file.seek(0)
        return self.file


@dataclass(frozen=True)
class TargetFiles:
    """A target's complete output. Paths are relative to the target directory. Key files
    are written (and fsynced) before any table, so a table never names a missing key."""

    keys: dict[str, bytes] = field(default_factory=dict)
    tables: dict[str, bytes] = field(default_factory=dict)
    # tables of a million lines, spooled to private temp files
    spooled: dict[str, BinaryIO] = field(default_factory=dict)


class Format(Protocol):
    name: str

    def key_name(self, entry: SigningEntry) -> str:
        """The relative path of the entry's key file."""
        ...

    def key_files(self, entries: Sequence[SigningEntry], read_key: KeyReader) -> dict[str, bytes]:
        """The key file of each of these entries' keys, by relative path."""
        ...

    def tables(self, entries: Sequence[SigningEntry], key_dir: str) -> dict[str, bytes]:
        """The tables for exactly these entries, naming keys under `key_dir` (the absolute
        directory the signer reads them from)."""
        ...


@runtime_checkable
class StreamedTables(Protocol):
    """A format whose tables are written a line at a time from the signing set's rows in
    sender order (a million lines never held in memory)."""

    table_names: tuple[str, ...]

    def write_tables(
        self, rows: Iterator[tuple[Any, ...]], key_dir: str, out: Sequence[Callable[[str], object]]
    ) -> None:
        """Each table's lines to its `out` (in table_names order)."""
        ...


@runtime_checkable
class Limits(Protocol):
    """A format that cannot sign every sender exactly (KumoMTA's helper): which ones not,
    so that a target leaves them out rather than refusing every other sender with them,
    and onboarding can refuse them before they are recorded."""

    def refused(
        self, entries: Sequence[SigningEntry], beside: Sequence[SigningEntry] = ()
    ) -> dict[str, str]:
        """Signing pattern -> why, for the senders of `entries` this format cannot sign
        beside `beside` (a sample of what it signs already; empty: `entries` is all)."""
        ...


class OnceEach:
    """While signatures pass in sender order: whether a pattern comes twice, and whether a
    key is seen for the first time."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self._previous: str | None = None
        self._capitals: set[str] = set()
        self._shared: set[str] = set()  # the ESP keys seen so far

    def pattern(self, pattern: str) -> None:
        """SignerError for a pattern listed twice. Patterns in normal form (all the store
        holds) are lower case, so a repeat is the previous group; one with capitals is
        remembered (they sort first) to catch its lower-case twin."""
        lower = pattern.lower()
        if lower == self._previous or lower in self._capitals:
            raise SignerError(f"{self.fmt}: signing pattern {pattern!r} is listed twice")
        self._previous = lower
        if pattern != lower:
            self._capitals.add(lower)

    def first_key(self, row: tuple[Any, ...]) -> bool:
        """Whether this row's key is new here: a customer's key signs once; an ESP key
        signs for many customers, and counts once."""
        if not row[7]:
            return True
        if row[0] in self._shared:
            return False
        self._shared.add(row[0])
        return True


def render(
    fmt: Format, entries: Sequence[SigningEntry], read_key: KeyReader, key_dir: str
) -> TargetFiles:
    """Everything a target holds for exactly these entries."""
    return TargetFiles(keys=fmt.key_files(entries, read_key), tables=fmt.tables(entries, key_dir))


def key_file(entry: SigningEntry, suffix: str = ".pem") -> str:
    """The relative path of an entry's key file inside a target directory."""
    return f"keys/{entry.key_id}{suffix}"


class PemKeys:
    """The key files of a format that reads rotator's PKCS#8 PEM as it is (all but rspamd,
    whose Ed25519 keys have a format of their own): keys/<key id>.pem."""

    def key_name(self, entry: SigningEntry) -> str:
        return key_file(entry)

    def key_files(self, entries: Sequence[SigningEntry], read_key: KeyReader) -> dict[str, bytes]:
        return {key_file(e): read_key(e) for e in unique_keys(entries)}


def by_sender(entries: Sequence[SigningEntry]) -> dict[str, list[SigningEntry]]:
    """Signing pattern -> its signatures, the customer's own first and the ESP's
    feedback-loop signature after, each group and the whole in a stable order."""
    out: dict[str, list[SigningEntry]] = {}
    for e in sorted(entries, key=lambda e: sender_order(signing_row(e))):
        out.setdefault(e.signing_pattern, []).append(e)
    return out


def sender_domain(pattern: str) -> str:
    """ "*@example.com" -> "example.com"; "*@*.example.com" -> ".example.com" (subdomains)."""
    rest = pattern.removeprefix("*@")
    return "." + rest.removeprefix("*.") if rest.startswith("*.") else rest


def unique_keys(entries: Sequence[SigningEntry]) -> list[SigningEntry]:
    """One entry per key (an ESP key signs for many senders), in a stable order."""
    seen: dict[str, SigningEntry] = {}
    for e in sorted(entries, key=lambda e: (e.domain, e.selector, e.key_id)):
        seen.setdefault(e.key_id, e)
    return list(seen.values())
