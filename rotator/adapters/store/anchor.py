"""The anchor: a file outside the database that gets the log's head after every transaction
and that rotator only ever appends to (make it append-only: chattr +a), so that a log cut
short or restored from an older copy is seen. One line per transaction, `position hash
mac`: the MAC (audit key) covers the position, the hash and the MAC of the line before, so
a line cannot be made without the key, and one of rotator's own lines appended again (to
match an older copy of the database) no longer follows the line before it. Lines without a
MAC were written before lines were keyed: they are accepted only ahead of the first keyed
line. The writer holds the anchor's lock across the database's commit, so lines follow
commit order: a keyed line's position is above the one before, and the last line names the
highest position anchored."""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

from ...domain.errors import StoreError
from .connection import Cursor, Sql
from .seal import Sealer

_TAIL = 1024  # bytes read back from the end: at least three whole lines
_STEP = 32  # anchored positions this close are reached by stepping a cursor, not a lookup


class Line(NamedTuple):
    number: int  # in the file, from 1
    position: int
    hash: str
    mac: str  # "" on a line written before lines were keyed


class Anchor:
    """Appends the log's head after every transaction; reads the lines back, streaming."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # (position, hash) of lines whose write failed after their commit: written ahead
        # of the next transaction's line
        self.missed: list[tuple[int, str]] = []

    @contextlib.contextmanager
    def locked(self, seal: Sealer | None, timeout: float = 10.0) -> Iterator[Writer]:
        """The anchor opened and locked for one transaction: taken before the database's
        write lock and held across its commit. A StoreError here comes before anything is
        written (the anchor cannot be opened, or its last line is not a line)."""
        with contextlib.suppress(FileExistsError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise StoreError(f"anchor {self.path}: {exc.strerror}; nothing was written") from None
        try:
            _lock(fd, self.path, timeout)
            last = _last_lines(fd, self.path)
            yield Writer(self, fd, seal, last[-1].mac if last else "")
        finally:
            os.close(fd)  # and with it the lock

    def lines(self) -> Iterator[Line]:
        """Every line, streaming, up to the size the file has now (a line appended later
        names an event committed after this call, which a reader may not see)."""
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - the generator closes it
        except FileNotFoundError:
            return iter(())
        except OSError as exc:
            raise StoreError(f"anchor {self.path}: {exc.strerror}") from None
        return _read(fh, os.fstat(fh.fileno()).st_size, self.path)

    def keyed(self) -> bool:
        """Whether any line carries a MAC: the log was sealed (read up to the first one)."""
        return any(line.mac for line in self.lines())

    def tail(self) -> tuple[Line | None, str]:
        """The last line and the MAC of the one before it ("" if there is none or it has
        none): what the last line's MAC covers."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None, ""
        except OSError as exc:
            raise StoreError(f"anchor {self.path}: {exc.strerror}") from None
        try:
            last = _last_lines(fd, self.path)
        finally:
            os.close(fd)
        if not last:
            return None, ""
        return last[-1], last[-2].mac if len(last) > 1 else ""

    def last(self) -> tuple[int, str] | None:
        line = self.tail()[0]
        return (line.position, line.hash) if line else None


class Writer:
    def __init__(self, anchor: Anchor, fd: int, seal: Sealer | None, prev: str) -> None:
        self.anchor, self.fd, self.seal, self.prev = anchor, fd, seal, prev

    def append(self, position: int, event_hash: str) -> None:
        """Write the line (after any whose write failed before). A failure after the commit
        cannot undo it: the line is kept and written by the next transaction."""
        pending = [*self.anchor.missed, (position, event_hash)]
        text, prev = [], self.prev
        for pos, digest in pending:
            prev = self.seal.anchor(pos, digest, prev) if self.seal is not None else ""
            text.append(f"{pos} {digest} {prev}".rstrip() + "\n")
        data = "".join(text).encode()
        try:
            if os.write(self.fd, data) != len(data):
                raise OSError(0, "short write")
            os.fsync(self.fd)
        except OSError:
            self.anchor.missed = pending
            raise
        self.anchor.missed = []
        self.prev = prev


def _read(fh: BinaryIO, size: int, path: Path) -> Iterator[Line]:
    with fh:
        read = 0
        for number, raw in enumerate(fh, 1):
            read += len(raw)
            if read > size:
                return
            yield parse(raw, number, path)


def parse(raw: bytes, number: int, path: Path) -> Line:
    parts = raw.decode("ascii", "replace").split()
    if (
        len(parts) in (2, 3)
        and parts[0].isdigit()
        and len(parts[1]) == 64
        and (len(parts) == 2 or len(parts[2]) == 64)
    ):
        return Line(number, int(parts[0]), parts[1], parts[2] if len(parts) == 3 else "")
    text = raw.decode("ascii", "replace").strip()
    where = f"line {number}" if number else "a line at its end"
    raise StoreError(f"anchor {path}: {where} {text!r} is not 'position hash mac'")


def _lock(fd: int, path: Path, timeout: float) -> None:
    """flock, waiting at most `timeout` seconds (as SQLite waits for its write lock)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise StoreError(
                    f"anchor {path}: another writer holds it; try again (nothing was written)"
                ) from None
            time.sleep(0.005)


def _last_lines(fd: int, path: Path) -> list[Line]:
    size = os.fstat(fd).st_size
    start = max(0, size - _TAIL)
    chunk = os.pread(fd, size - start, start)
    raws = chunk.splitlines(keepends=True)
    if start and raws:
        raws = raws[1:]  # maybe cut
    if raws and not raws[-1].endswith(b"\n"):
        raise StoreError(f"anchor {path}: its last line is cut short; move it aside")
    return [parse(raw, 0, path) for raw in raws[-2:] if raw.strip()]


# --- checking it against the log ---------------------------------------------------------


@dataclass
class AnchorCheck:
    problem: str | None = None
    keyed_from: int | None = None  # the first keyed line's position: the log is sealed there


def check_anchor(anchor: Anchor, seal: Sealer | None, sql: Sql) -> AnchorCheck:
    """Every line, in one pass over the file, merged with the log in position order (a
    cursor stepped over close positions, a lookup for far ones): its form, its MAC (with
    the key), no unkeyed line after a keyed one, keyed positions increasing, and the log
    holding each anchored event with exactly that hash. Stops at the first problem."""
    out = AnchorCheck()
    path, prev_mac, prev_pos = anchor.path, "", 0
    cursor: Cursor | None = None
    rows: Iterator[tuple[int, str]] = iter(())
    row: tuple[int, str] | None = None
    try:
        # the anchor's size before the log's head: each line read names a committed event
        lines = anchor.lines()
        head = sql.execute("SELECT MAX(position) FROM events").fetchone()[0] or 0
        for line in lines:
            number, position, digest, mac = line
            where = f"anchor {path}: line {number} (event {position})"
            if mac:
                if seal is not None and not hmac.compare_digest(
                    mac, seal.anchor(position, digest, prev_mac)
                ):
                    out.problem = f"{where} does not carry rotator's MAC: forged"
                elif position <= prev_pos and out.keyed_from is not None:
                    out.problem = f"{where} goes back from event {prev_pos}: forged"
                if out.keyed_from is None:
                    out.keyed_from = position
            elif out.keyed_from is not None:
                out.problem = f"{where} carries no MAC after keyed lines: forged"
            if out.problem is None and position > head:
                out.problem = (
                    f"the log ends at event {head} but the anchor {path} has event "
                    f"{position}: the log was cut off or rolled back"
                )
            if out.problem is not None:
                return out
            if row is None or not row[0] <= position <= row[0] + _STEP:
                if cursor is not None:
                    cursor.close()  # one scan open at a time, however far the lines jump
                cursor = sql.stream(
                    "SELECT position, hash FROM events WHERE position >= ? ORDER BY position",
                    [position],
                )
                rows = iter(cursor)
                row = next(rows, None)
            while row is not None and row[0] < position:
                row = next(rows, None)
            if row is None or row[0] != position:
                out.problem = f"the anchor {path} has event {position}, which the log lacks"
            elif row[1] != digest:
                out.problem = f"event {position} differs from the anchor {path}: rewritten"
            if out.problem is not None:
                return out
            prev_mac, prev_pos = mac, max(prev_pos, position)
    except StoreError as exc:
        out.problem = str(exc)
    finally:
        if cursor is not None:
            cursor.close()
    return out


def tail_problem(anchor: Anchor, seal: Sealer | None, sql: Sql) -> str | None:
    """What the daemon checks at start, in O(1) (the whole file only when the last line
    has no MAC): the last line is rotator's, its event is in the log with that hash, and
    (a keyed line) sealed."""
    try:
        line, prev = anchor.tail()
    except StoreError as exc:
        return str(exc)
    if line is None:
        return None
    where = f"anchor {anchor.path}: its last line (event {line.position})"
    if line.mac and seal is not None:
        if not hmac.compare_digest(line.mac, seal.anchor(line.position, line.hash, prev)):
            return f"{where} does not carry rotator's MAC: forged"
    elif not line.mac and seal is not None:
        full = check_anchor(anchor, seal, sql)
        if full.problem is not None or full.keyed_from is not None:
            return full.problem or f"{where} carries no MAC after keyed lines: forged"
    event = sql.execute(
        "SELECT hash, mac FROM events WHERE position = ?", [line.position]
    ).fetchone()
    if event is None:
        head = sql.execute("SELECT MAX(position) FROM events").fetchone()[0] or 0
        return (
            f"the log ends at event {head} but the anchor {anchor.path} has event "
            f"{line.position}: the log was cut off or rolled back"
        )
    if event[0] != line.hash:
        return f"event {line.position} differs from the anchor {anchor.path}: rewritten"
    if (
        line.mac
        and seal is not None
        and (event[1] is None or not hmac.compare_digest(event[1], seal.event(event[0])))
    ):
        return f"event {line.position}: MAC removed or not rotator's (the anchor has it sealed)"
    return None
