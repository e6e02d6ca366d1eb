"""A key store whose truth is a database every node reaches (keys.store = "database"): each
private key is sealed there (envelope.py) before anything refers to it, and the key
directory is a copy made from it, which the signers read by path as before. A node that
takes over makes the copies it lacks (`materialize`), without a shared filesystem.

Order of writes: sealed row first, then the local file; destroy deletes the row, then wipes
the file. So a local file always has its row unless the key was destroyed, and a row
without a local file is a key this node has not copied yet (or one a crash left before
KeyGenerated, which start-up wipes like any unrecorded key: `stored_ids` names both)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from ...config.keys import URLS
from ...domain.errors import ConfigError, ExternalError, StoreError
from ...ports import GeneratedKey, Materialized, SealedKeys
from .envelope import Envelope, Kek
from .files import FsKeyStore, customer_private_key, describe_private_key, generate_pem


def open_sealed_keys(database: str | Path) -> SealedKeys:
    """A `postgresql://` URL (libpq's connection string), or an SQLite file."""
    if isinstance(database, str) and database.startswith(URLS):
        try:
            from .sealed_postgres import PostgresSealedKeys
        except ImportError:
            raise ConfigError(
                "keys.database is a PostgreSQL URL, and psycopg is not installed: install "
                "rotator[postgresql]"
            ) from None
        return PostgresSealedKeys(database)
    from .sealed_sqlite import SqliteSealedKeys

    return SqliteSealedKeys(Path(database))


class SealedKeyStore:
    def __init__(self, files: FsKeyStore, sealed: SealedKeys, envelope: Envelope) -> None:
        self.files = files
        self.sealed = sealed
        self.envelope = envelope

    @property
    def dir(self) -> Path:
        return self.files.dir

    @staticmethod
    def describe(pem: bytes) -> tuple[str, int, bytes]:
        return describe_private_key(pem)

    @staticmethod
    def customer_key(pem: bytes) -> tuple[str, int, bytes, bytes]:
        return customer_private_key(pem)

    def path(self, key_id: str) -> Path:
        return self.files.path(key_id)

    def key_file(self, key_id: str) -> str:
        return self.files.key_file(key_id)

    def seal(self, key_id: str, pem: bytes) -> None:
        """Put the key's sealed copy in the database (durably, when this returns)."""
        self.files.path(key_id)  # a valid key id, before it reaches the database
        self.sealed.put(key_id, self.envelope.seal(key_id, pem))

    def generate(self, key_id: str, algorithm: str, bits: int) -> GeneratedKey:
        pem, material = generate_pem(algorithm, bits)
        path = self.write(key_id, pem)
        return GeneratedKey(
            public_key_b64=base64.b64encode(material).decode("ascii"),
            fingerprint=hashlib.sha256(material).hexdigest(),
            path=path,
        )

    def write(self, key_id: str, pem: bytes) -> Path:
        self.seal(key_id, pem)
        try:
            return self.files.write(key_id, pem)
        except BaseException:
            # nothing will record this key: its sealed copy must not outlive the call (if
            # it does, start-up wipes it as it wipes any key the log does not hold)
            with contextlib.suppress(ExternalError):
                self.sealed.delete(key_id)
            raise

    def exists(self, key_id: str) -> bool:
        return self.sealed.get(key_id) is not None

    def destroy(self, key_id: str) -> bool:
        """The sealed row, then the local file and its temp files. Idempotent."""
        row = self.sealed.delete(key_id)
        return self.files.destroy(key_id) or row

    def destroy_many(self, key_ids: Sequence[str]) -> list[bool | ExternalError]:
        """The sealed rows one by one (a row is a few hundred bytes: cheap), then the local
        files all at once as the key directory wipes them."""
        rows: list[bool | ExternalError] = []
        for key_id in key_ids:
            try:
                rows.append(self.sealed.delete(key_id))
            except ExternalError as exc:
                rows.append(exc)
        kept = [k for k, r in zip(key_ids, rows, strict=True) if not isinstance(r, ExternalError)]
        files = iter(self.files.destroy_many(kept))
        out: list[bool | ExternalError] = []
        for row in rows:
            if isinstance(row, ExternalError):
                out.append(row)  # the row is still there: the local copy stays too
                continue
            wiped = next(files)
            out.append(wiped if isinstance(wiped, ExternalError) else wiped or row)
        return out

    def stored_ids(self) -> list[str]:
        """Every key held here: sealed, or in a local file (one without a row is a key
        destroyed elsewhere, or left by a crash: start-up wipes what the log does not hold)."""
        return sorted(set(self.files.stored_ids()) | set(self.sealed.ids()))

    def wipe_leftovers(self) -> int:
        return self.files.wipe_leftovers()

    def materialize(self, ids: Collection[str]) -> Materialized:
        """The local file of each of `ids` made from its sealed copy where it is missing; a
        local file of `ids` without a row sealed (a key directory from before keys.store =
        "database"); any other local file without a row wiped (destroyed elsewhere)."""
        done = Materialized()
        wanted = set(ids)
        # the files first: a file listed now had its row before it existed
        local = set(self.files.stored_ids())
        sealed = set(self.sealed.ids())
        for key_id in sorted(local - sealed):
            if key_id in wanted:
                pem = self.files.read(key_id)
                describe_private_key(pem, ours=True)  # a key, not whatever the file holds
                self.seal(key_id, pem)
                done.sealed.append(key_id)
            elif self.files.destroy(key_id):
                done.wiped.append(key_id)
        for key_id in sorted((wanted & sealed) - local):
            blob = self.sealed.get(key_id)
            if blob is None:  # destroyed since
                done.missing.append(key_id)
                continue
            try:
                pem = self.envelope.open(key_id, blob)
            except (ConfigError, StoreError) as exc:
                done.unreadable[key_id] = str(exc)
                continue
            self.files.write(key_id, pem)
            done.written.append(key_id)
        done.missing += sorted(wanted - sealed - local)
        return done

    def close(self) -> None:
        self.sealed.close()


@dataclass(frozen=True)
class Rewrapped:
    kek: str  # the new KEK's id
    rewrapped: int  # rows whose data key is now wrapped by the new KEK
    already: int  # rows that were
    left: list[str]  # rows still under another KEK (sealed meanwhile by a node on the old)


def rewrap(sealed: SealedKeys, envelope: Envelope, new: Kek) -> Rewrapped:
    """Wrap every row's data key with `new` (the encrypted keys stay as they are); a row
    is swapped only if it still holds what was read, so a key destroyed or sealed again
    meanwhile is never brought back. Rows `envelope` cannot open stop it (one line)."""
    done = already = 0
    for key_id in sealed.ids():
        for _ in range(3):  # a row sealed again meanwhile is read again
            blob = sealed.get(key_id)
            if blob is None:
                break
            if Envelope.kek_of(blob) == new.id:
                already += 1
                break
            if sealed.replace(key_id, blob, envelope.rewrap(key_id, blob, new)):
                done += 1
                break
    left = [k for k in sealed.ids() if Envelope.kek_of(sealed.get(k) or b"") not in ("", new.id)]
    return Rewrapped(new.id, done, already, left)
