"""Pre-generated keys waiting for an identity, in `<key_dir>/pool/` (0700, same filesystem
as the key store): `<algorithm>-<bits>-<key_id>.pem`, each written like any key (temp file,
fsync, rename). Taking one renames it into the key store under its own key id, so a key is
always in exactly one place; a crash between the rename and the KeyGenerated event leaves
an orphan in the key store, which start-up wipes as it wipes any unrecorded key.

With keys sealed in a database (sealed.py), pooled keys stay local until taken: taking one
seals it first (`seal`), then renames it, so that the key the event then names is one
every node can read."""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Callable

from ...domain.errors import ExternalError
from ...ports import GeneratedKey
from .files import (
    SUFFIX,
    TMP_SUFFIX,
    FsKeyStore,
    describe_private_key,
    fsync_dir,
    generate_pem,
    write_key_file,
)

_NAME = re.compile(r"^(rsa|ed25519)-(\d{3,4})-([A-Za-z0-9_-]{1,64})\.pem$")


class FsKeyPool:
    def __init__(
        self, keystore: FsKeyStore, seal: Callable[[str, bytes], None] | None = None
    ) -> None:
        self.keystore = keystore
        self.dir = keystore.dir / "pool"
        self.seal = seal

    def _prepare(self) -> None:
        self.keystore.prepare()
        try:
            self.dir.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise ExternalError(f"key pool {self.dir}: {exc.strerror}") from None

    def add(self, key_id: str, algorithm: str, bits: int) -> str:
        """Generate one key into the pool (run in a worker process); its fingerprint."""
        self._prepare()
        pem, material = generate_pem(algorithm, bits)
        path = self.dir / f"{algorithm}-{bits}-{key_id}{SUFFIX}"
        try:
            write_key_file(path, key_id, pem)
        except OSError as exc:
            raise ExternalError(f"cannot write pooled key {path}: {exc.strerror}") from None
        return hashlib.sha256(material).hexdigest()

    def inventory(self) -> dict[str, tuple[str, int]]:
        """key_id -> (algorithm, bits) of every pooled key."""
        out: dict[str, tuple[str, int]] = {}
        if not self.dir.is_dir():
            return out
        for p in self.dir.iterdir():
            m = _NAME.match(p.name)
            if m:
                out[m.group(3)] = (m.group(1), int(m.group(2)))
        return out

    def counts(self) -> dict[tuple[str, int], int]:
        out: dict[tuple[str, int], int] = {}
        for spec in self.inventory().values():
            out[spec] = out.get(spec, 0) + 1
        return out

    def take(self, algorithm: str, bits: int, wanted: int) -> list[tuple[str, GeneratedKey]]:
        """Up to `wanted` pooled keys of this kind, moved into the key store."""
        taken: list[tuple[str, GeneratedKey]] = []
        if wanted <= 0 or not self.dir.is_dir():
            return taken
        prefix = f"{algorithm}-{bits}-"
        for name in sorted(os.listdir(self.dir)):
            if len(taken) >= wanted:
                break
            m = _NAME.match(name)
            if not m or not name.startswith(prefix):
                continue
            key_id = m.group(3)
            dest = self.keystore.path(key_id)
            try:
                if self.seal is not None:
                    pem = (self.dir / name).read_bytes()
                    try:
                        self.seal(key_id, pem)
                    except ExternalError:
                        # the database is out of reach: keep the rest pooled; generating
                        # a key instead fails the same way, and says why
                        break
                os.rename(self.dir / name, dest)
                if self.seal is None:
                    pem = dest.read_bytes()
            except FileNotFoundError:  # another process took it first
                continue
            except OSError as exc:
                raise ExternalError(f"cannot take pooled key {name}: {exc.strerror}") from None
            _, _, material = describe_private_key(pem, ours=True)
            taken.append(
                (
                    key_id,
                    GeneratedKey(
                        public_key_b64=base64.b64encode(material).decode("ascii"),
                        fingerprint=hashlib.sha256(material).hexdigest(),
                        path=dest,
                    ),
                )
            )
        if taken:
            fsync_dir(self.dir)
            fsync_dir(self.keystore.dir)
        return taken

    def discard(self, keep: set[str] | None = None) -> list[str]:
        """Wipe pooled keys (all, or those not in `keep`) and interrupted temp files."""
        wiped: list[str] = []
        if not self.dir.is_dir():
            return wiped
        for p in sorted(self.dir.iterdir()):
            m = _NAME.match(p.name)
            if m and keep is not None and m.group(3) in keep:
                continue
            if m or p.name.endswith(TMP_SUFFIX):
                self.keystore._wipe(p)
                if m:
                    wiped.append(m.group(3))
        fsync_dir(self.dir)
        return wiped
