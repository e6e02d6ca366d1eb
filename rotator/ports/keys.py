"""Private keys: the key store, the pool of keys generated ahead of need, and the sealed
copies a key store kept in a database holds (so that any node can take over)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..domain.errors import ExternalError


@dataclass(frozen=True)
class GeneratedKey:
    public_key_b64: str  # the p= value
    fingerprint: str  # sha256 hex of the public key
    path: Path


@dataclass
class Materialized:
    """What bringing the local key files in line with the key store did."""

    written: list[str] = field(default_factory=list)  # local files made from sealed copies
    sealed: list[str] = field(default_factory=list)  # local files sealed (none were yet)
    wiped: list[str] = field(default_factory=list)  # local files of keys destroyed elsewhere
    missing: list[str] = field(default_factory=list)  # wanted, but held nowhere
    unreadable: dict[str, str] = field(default_factory=dict)  # key id -> why it did not open


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

    def destroy_many(self, key_ids: Sequence[str]) -> list[bool | ExternalError]:
        """destroy() of each key, at once; its ExternalError in its place."""
        ...

    def stored_ids(self) -> list[str]: ...

    def wipe_leftovers(self) -> int:
        """Wipe the temp files interrupted writes left behind; how many there were."""
        ...

    def materialize(self, ids: Collection[str]) -> Materialized:
        """Make the local key file of each of `ids` (the keys the log holds live) that is
        missing, from the store's own copy, and wipe local files of keys destroyed
        elsewhere: at start-up, and when a node takes over. Nothing for a key directory
        that is itself the store."""
        ...


class SealedKeys(Protocol):
    """Encrypted private keys by key id, in a database every node reaches. Blobs are
    opaque here (the envelope seals and opens them)."""

    def put(self, key_id: str, blob: bytes) -> None:
        """Insert or replace, durably, before returning."""
        ...

    def get(self, key_id: str) -> bytes | None: ...

    def replace(self, key_id: str, old: bytes, new: bytes) -> bool:
        """Swap `old` for `new` only if the row still holds `old` (a row deleted or
        resealed meanwhile is left alone); whether it did."""
        ...

    def delete(self, key_id: str) -> bool:
        """Idempotent; True if a row went."""
        ...

    def ids(self) -> list[str]: ...

    def close(self) -> None: ...


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
