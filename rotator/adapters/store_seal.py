"""The keyed part of the audit trail. The hash chain alone can be recomputed by anyone who
can write the database; an HMAC key kept outside it (a 0400 file, or a systemd credential)
cannot. Each event's hash gets a MAC (and since each hash chains to the one before, the
last MAC covers the whole log up to it); each projection row gets one too, so a row edited
behind rotator's back is refused when it is read; the projection's head (the last position
folded into it) is sealed so that a projection and a log that disagree are seen at start.
After each transaction its last (position, hash) is appended to the anchor, a file outside
the database that the daemon only ever appends to (make it append-only: chattr +a), which
`rotator audit verify` compares with the log to see a cut-off tail."""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from ..domain.errors import ConfigError, StoreError

KEY_BYTES = 32
# what json.dumps(..., separators=(",", ":"), default=str) builds per call, built once
_ROW_JSON = json.JSONEncoder(separators=(",", ":"), default=str)


class Sealer:
    def __init__(self, key: bytes) -> None:
        self.key = key

    def __repr__(self) -> str:  # never the key
        return "Sealer(<key>)"

    def mac(self, text: str) -> str:
        return hmac.digest(self.key, text.encode(), "sha256").hex()  # one-shot, in C

    def event(self, event_hash: str) -> str:
        return self.mac(f"event:{event_hash}")

    def row(self, table: str, row: dict[str, Any]) -> str:
        body = _ROW_JSON.encode([table, {k: row[k] for k in sorted(row) if k != "mac"}])
        return self.mac(body)

    def head(self, position: int, event_hash: str) -> str:
        return self.mac(f"head:{position}:{event_hash}")

    def check_row(self, table: str, row: dict[str, Any], name: str) -> None:
        if not hmac.compare_digest(str(row.get("mac") or ""), self.row(table, row)):
            raise StoreError(
                f"{table} row {name} was not written by rotator (its MAC does not match): "
                "the projection was edited; run `rotator audit verify`, then `rotator db "
                "rebuild` if the log itself is intact"
            )


def load_key(path: Path, create: bool) -> bytes:
    """The audit key: a file of at least 32 random bytes, owned by this user, 0400 or
    0600. With `create` (a writing command on a log that has no keyed event yet) a missing
    key is made; otherwise a missing key is an error (the log depends on it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        if not create:
            raise ConfigError(
                f"audit key {path} is missing: the log's MACs cannot be checked without it; "
                "restore it from your backup of it"
            ) from None
        return _create(path)
    except OSError as exc:
        raise ConfigError(f"audit key {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise ConfigError(
                f"audit key {path} is readable or writable by others "
                f"(mode {stat.S_IMODE(st.st_mode):o}); chmod 0400 it"
            )
        key = fh.read(4096)
    if len(key) < KEY_BYTES:
        raise ConfigError(f"audit key {path} holds {len(key)} bytes; it needs {KEY_BYTES}")
    return key


def _create(path: Path) -> bytes:
    key = secrets.token_bytes(KEY_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o400)
    except OSError as exc:
        raise ConfigError(f"cannot create audit key {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
        fh.flush()
        os.fsync(fh.fileno())
    return key


class Anchor:
    """Appends `position hash` after every transaction; reads the last line back."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, position: int, event_hash: str) -> None:
        line = f"{position} {event_hash}\n".encode()
        with contextlib.suppress(FileExistsError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def last(self) -> tuple[int, str] | None:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - 256))
                tail = fh.read().decode("ascii", "replace").strip().splitlines()
        except FileNotFoundError:
            return None
        if not tail:
            return None
        position, _, digest = tail[-1].partition(" ")
        if not position.isdigit() or len(digest) != 64:
            raise StoreError(f"anchor {self.path}: last line {tail[-1]!r} is not 'position hash'")
        return int(position), digest
