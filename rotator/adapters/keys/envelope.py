"""Envelope encryption of private keys kept in a database: each key's PKCS#8 PEM is
encrypted with a data key (DEK) of its own, and the DEK is wrapped by the key-encryption
key (KEK) the operator provides, a file outside the database. Changing the KEK re-wraps
the DEKs only (`rotator keys rewrap`); destroying the old KEK then leaves every copy of an
old wrapped DEK (WAL, dead tuples, backups) undecryptable.

A sealed blob, version 1 (offsets in octets):

    0   1   version (1)
    1   8   id of the KEK that wrapped the DEK
    9   12  nonce of the wrap
    21  48  the DEK (32) wrapped with AES-256-GCM (16-octet tag)
    69  12  nonce of the data
    81  ..  the PEM encrypted with AES-256-GCM under the DEK, then its tag

Associated data: "rotator-dek/1\\0" + key id + "\\0" + KEK id for the wrap, and
"rotator-key/1\\0" + key id for the PEM, so that a row moved under another key id, or
opened with another KEK, fails instead of yielding a key. Both nonces are random (a DEK
encrypts one PEM; a KEK wraps far fewer than the 2^32 DEKs random nonces allow).

The KEK file holds 32 random octets in standard base64 (44 characters, one line), owned
by rotator's user, mode 0400 or 0600; `rotator keys kek-create FILE` writes one."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import stat
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ...domain.errors import ConfigError, StoreError
from .files import fsync_dir

KEK_BYTES = 32
VERSION = 1
_ID = 8
_NONCE = 12
_WRAPPED = KEK_BYTES + 16
_HEAD = 1 + _ID + _NONCE + _WRAPPED + _NONCE  # 81: where the encrypted PEM starts
_SHORTEST = _HEAD + 16  # an empty PEM's tag


class Kek:
    """A key-encryption key and its id (a MAC of a constant, which names the key without
    revealing it)."""

    def __init__(self, key: bytes, source: str = "") -> None:
        if len(key) != KEK_BYTES:
            raise ConfigError(f"a KEK is {KEK_BYTES} octets, not {len(key)}")
        self.key = key
        self.source = source
        self.id = hmac.new(key, b"rotator kek id", hashlib.sha256).hexdigest()[: 2 * _ID]

    def __repr__(self) -> str:  # never the key
        return f"Kek({self.id})"


def _dek_ad(key_id: str, kek_id: bytes) -> bytes:
    return b"rotator-dek/1\0" + key_id.encode() + b"\0" + kek_id


def _key_ad(key_id: str) -> bytes:
    return b"rotator-key/1\0" + key_id.encode()


class Envelope:
    """Seals with `kek`; opens with `kek` or any of `also` (the previous KEK while every
    row is re-wrapped)."""

    def __init__(self, kek: Kek, also: Sequence[Kek] = ()) -> None:
        self.kek = kek
        self._keks = {k.id: k for k in (*also, kek)}

    def __repr__(self) -> str:
        return f"Envelope({self.kek.id})"

    def seal(self, key_id: str, pem: bytes) -> bytes:
        dek = AESGCM.generate_key(bit_length=256)
        nonce = secrets.token_bytes(_NONCE)
        data = AESGCM(dek).encrypt(nonce, pem, _key_ad(key_id))
        return self._wrap(key_id, dek, self.kek) + nonce + data

    def open(self, key_id: str, blob: bytes) -> bytes:
        """The PEM; ConfigError for a KEK this node lacks, StoreError for a row that is not
        this key's sealed PEM (altered, or another key's)."""
        dek = self._unwrap(key_id, blob)
        nonce, data = blob[_HEAD - _NONCE : _HEAD], blob[_HEAD:]
        try:
            return AESGCM(dek).decrypt(nonce, data, _key_ad(key_id))
        except InvalidTag:
            raise _altered(key_id, "its encrypted key") from None

    def rewrap(self, key_id: str, blob: bytes, kek: Kek) -> bytes:
        """The same encrypted PEM with its DEK wrapped by `kek` instead."""
        dek = self._unwrap(key_id, blob)
        return self._wrap(key_id, dek, kek) + blob[_HEAD - _NONCE :]

    @staticmethod
    def kek_of(blob: bytes) -> str:
        """The id of the KEK a blob's DEK is wrapped with ("" for no blob of ours)."""
        if len(blob) < _SHORTEST or blob[0] != VERSION:
            return ""
        return blob[1 : 1 + _ID].hex()

    @staticmethod
    def _wrap(key_id: str, dek: bytes, kek: Kek) -> bytes:
        kek_id = bytes.fromhex(kek.id)
        nonce = secrets.token_bytes(_NONCE)
        wrapped = AESGCM(kek.key).encrypt(nonce, dek, _dek_ad(key_id, kek_id))
        return bytes([VERSION]) + kek_id + nonce + wrapped

    def _unwrap(self, key_id: str, blob: bytes) -> bytes:
        if len(blob) < _SHORTEST or blob[0] != VERSION:
            version = blob[0] if blob else "none"
            raise StoreError(
                f"sealed key {key_id}: not a sealed key of this version (version {version}, "
                f"{len(blob)} octets): the row was altered, or written by a newer rotator"
            )
        kek_id = blob[1 : 1 + _ID]
        kek = self._keks.get(kek_id.hex())
        if kek is None:
            known = " or ".join(sorted(self._keks))
            raise ConfigError(
                f"sealed key {key_id} is wrapped by KEK {kek_id.hex()}, and this node has "
                f"KEK {known}: give it the KEK the keys were sealed with (keys.kek_file, or "
                "keys.previous_kek_file while `rotator keys rewrap` runs)"
            )
        nonce = blob[1 + _ID : 1 + _ID + _NONCE]
        wrapped = blob[1 + _ID + _NONCE : _HEAD - _NONCE]
        try:
            return AESGCM(kek.key).decrypt(nonce, wrapped, _dek_ad(key_id, kek_id))
        except InvalidTag:
            raise _altered(key_id, f"its data key (KEK {kek.id})") from None


def _altered(key_id: str, what: str) -> StoreError:
    return StoreError(
        f"sealed key {key_id}: {what} does not open: the row was altered, or holds another "
        "key's sealed copy (rows swapped); restore it from a backup, or treat the key as lost"
    )


def read_kek(path: Path, credentials: str | None = None) -> Kek:
    """The KEK in `path`: a regular file owned by this user, mode 0400 or 0600, holding 32
    octets in base64. A systemd credential (a file in `credentials`, $CREDENTIALS_DIRECTORY)
    is taken as systemd made it: readable by the unit's user alone, through an ACL (the
    file then belongs to root and shows group bits) or its ownership."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise ConfigError(
            f"KEK {path}: {exc.strerror}; give keys.kek_file the key-encryption key every "
            "node shares (`rotator keys kek-create FILE` makes one)"
        ) from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        credential = credentials is not None and path.parent == Path(credentials)
        if not credential:
            refuse_loose_secret(path, st, "KEK")
        raw = fh.read(4096)
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEK_BYTES:
        raise ConfigError(
            f"KEK {path}: not {KEK_BYTES} octets in base64 (44 characters on one line); "
            "`rotator keys kek-create FILE` makes one"
        )
    return Kek(key, str(path))


def refuse_loose_secret(path: Path, st: os.stat_result, what: str) -> None:
    """A secret file of rotator's: a regular file of this user, 0400 or 0600."""
    mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{what} {path}: not a regular file")
    if st.st_uid != os.geteuid():
        raise ConfigError(
            f"{what} {path} belongs to uid {st.st_uid}, not to this user (uid "
            f"{os.geteuid()}): chown it to the user rotator runs as"
        )
    if mode not in (0o400, 0o600):
        raise ConfigError(f"{what} {path} has mode {mode:04o}: chmod 0400 {path}")


def create_kek(path: Path) -> Kek:
    """A new KEK written to `path` (which must not exist yet), mode 0400."""
    kek = Kek(secrets.token_bytes(KEK_BYTES), str(path))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o400)
    except FileExistsError:
        raise ConfigError(
            f"{path} exists: a KEK is never overwritten (the keys it wraps would be lost)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot create KEK {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), 0o400)  # whatever the umask
        fh.write(base64.b64encode(kek.key) + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    fsync_dir(path.parent)
    return kek
