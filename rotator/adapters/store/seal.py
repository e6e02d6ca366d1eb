"""The keyed part of the audit trail. The hash chain alone can be recomputed by anyone who
can write the database; an HMAC key kept outside it (a 0400 file, or a systemd credential)
cannot. Each event's hash gets a MAC (and since each hash chains to the one before, the
last MAC covers the whole log up to it); each projection row gets one too, so a row edited
behind rotator's back is refused when it is read; the projection's head (the last position
folded into it) is sealed so that a projection and a log that disagree are seen at start.
The anchor (store_anchor.py) keeps the log's head outside the database, each line keyed
too."""

from __future__ import annotations

import hashlib
import hmac
import json
import operator
import os
import secrets
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ...domain.errors import ConfigError, StoreError

KEY_BYTES = 32
_BLOCK = 64  # SHA-256's block size
# what json.dumps(..., separators=(",", ":"), default=str) builds per call, built once
_ROW_JSON = json.JSONEncoder(separators=(",", ":"), default=str)


def _row_encoder() -> Callable[[Any], str]:
    """_ROW_JSON.encode for a list or tuple, without the encoder JSONEncoder.iterencode
    builds on every call (a million rows' MACs are checked at a start without a signer
    stamp). No circular check: a row is flat. Same output (tested)."""
    make: Any = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython has the C accelerator
        return _ROW_JSON.encode
    chunks = make(
        None, str, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True
    )
    return lambda values: "".join(chunks(values, 0))


_encode_row = _row_encoder()
# A projection row's MAC today: this prefix, then the MAC of the row's values in column
# name order after a header naming the table and the columns (worked out once per column
# set, not sorted per row). A MAC without it is the first form, over the row as a sorted
# JSON object (3x slower to compute); rows sealed so are still accepted until rewritten.
ROW_MAC = "2:"


class Sealer:
    def __init__(self, key: bytes, new: bool = False) -> None:
        """`new`: the key was made by this command, so a log that nothing shows was ever
        sealed may be sealed now; with a key made before, such a log had its MACs removed."""
        self.new = new
        # HMAC-SHA256 (RFC 2104) from the keyed inner and outer states, made once: each MAC
        # is then two copies and two updates, 2.5x faster than hmac.digest setting up the
        # key every time (a million-identity fill computes seven million; the tests hold
        # the two equal)
        block = hashlib.sha256(key).digest() if len(key) > _BLOCK else key
        block = block.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        self._layouts: dict[tuple[str, tuple[str, ...]], tuple[str, Callable[[Any], Any]]] = {}
        # handed to the worker processes that check a million rows' MACs at once
        self.key = key

    def __repr__(self) -> str:  # never the key
        return "Sealer(<key>)"

    def mac(self, text: str) -> str:
        inner = self._inner.copy()
        inner.update(text.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()

    def event(self, event_hash: str) -> str:
        return self.mac(f"event:{event_hash}")

    def row(self, table: str, row: dict[str, Any]) -> str:
        """The MAC a projection row is written with (its own "mac" column left out)."""
        header, values = self._layout(table, tuple(row))
        return ROW_MAC + self.mac(header + _encode_row(values(row)))

    def row_v1(self, table: str, row: dict[str, Any]) -> str:
        """The first form of a row's MAC (rows sealed before ROW_MAC)."""
        body = _ROW_JSON.encode([table, {k: row[k] for k in sorted(row) if k != "mac"}])
        return self.mac(body)

    def head(self, position: int, event_hash: str) -> str:
        return self.mac(f"head:{position}:{event_hash}")

    def anchor(self, position: int, event_hash: str, prev: str) -> str:
        """An anchor line's MAC: `prev` is the MAC of the line before ("" if it has none)."""
        return self.mac(f"anchor:{position}:{event_hash}:{prev}")

    def check_row(self, table: str, row: dict[str, Any], name: str) -> None:
        mac = str(row.get("mac") or "")
        want = self.row(table, row) if mac.startswith(ROW_MAC) else self.row_v1(table, row)
        if not hmac.compare_digest(mac, want):
            raise edited(table, name)

    def row_check(
        self, table: str, columns: Sequence[str], offset: int = 0
    ) -> Callable[[Sequence[Any]], bool]:
        """Whether a row of `table`, its values in `columns` order from `offset` on (a
        cursor's tuples, maybe of a join), carries its own MAC: the layout worked out once
        for a whole scan."""
        mac_i = columns.index("mac") + offset
        names = tuple(sorted(c for c in columns if c != "mac"))
        header = self._layout(table, names)[0]
        pick = _getter([columns.index(c) + offset for c in names])
        encode, mac = _encode_row, self.mac
        end = offset + len(columns)

        def sealed(values: Sequence[Any]) -> bool:
            found = values[mac_i]
            if isinstance(found, str) and found.startswith(ROW_MAC):
                want = ROW_MAC + mac(header + encode(pick(values)))
            else:
                mine = values[offset:end]
                want = self.row_v1(table, dict(zip(columns, mine, strict=True)))
            return hmac.compare_digest(str(found or ""), want)

        return sealed

    def _layout(self, table: str, columns: tuple[str, ...]) -> tuple[str, Callable[[Any], Any]]:
        layout = self._layouts.get((table, columns))
        if layout is None:
            names = sorted(c for c in columns if c != "mac")
            header = _ROW_JSON.encode(["row", table, names])
            layout = self._layouts[(table, columns)] = (header, _getter(names))
        return layout


def edited(table: str, name: object) -> StoreError:
    """The refusal of a projection row whose MAC does not match."""
    return StoreError(
        f"{table} row {name} was not written by rotator (its MAC does not match): "
        "the projection was edited; run `rotator audit verify`, then `rotator db "
        "rebuild` if the log itself is intact"
    )


def _getter(items: Sequence[Any]) -> Callable[[Any], Any]:
    """itemgetter that always returns a tuple (itemgetter of one item returns the item)."""
    if len(items) == 1:
        return lambda row: (row[items[0]],)
    return operator.itemgetter(*items)


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
