"""Private keys on the filesystem: one PKCS#8 PEM per key, mode 0600 in a 0700 directory.

Keys are written atomically (temp file + fsync + rename) and destroyed by overwriting with
zeros, fsync, unlink and a directory fsync. Nothing here logs key material.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from ..domain.errors import ExternalError, InputError
from ..ports import GeneratedKey

_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SUFFIX = ".pem"


def public_key_material(private_key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    """The bytes that go into p=: SubjectPublicKeyInfo DER for RSA (RFC 6376 3.6.1),
    the raw 32-byte key for ed25519 (RFC 8463 section 4.2)."""
    pub = private_key.public_key()
    if isinstance(pub, ed25519.Ed25519PublicKey):
        return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def describe_private_key(pem: bytes) -> tuple[str, int, bytes]:
    """(algorithm, bits, public material) of a PEM private key; InputError if unusable."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise InputError(f"not an unencrypted PEM private key: {exc}") from None
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa", key.key_size, public_key_material(key)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519", 256, public_key_material(key)
    raise InputError("private key must be RSA or Ed25519")


class FsKeyStore:
    def __init__(self, directory: Path | str) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)

    @staticmethod
    def describe(pem: bytes) -> tuple[str, int, bytes]:
        return describe_private_key(pem)

    def path(self, key_id: str) -> Path:
        if not _KEY_ID.fullmatch(key_id):
            raise InputError(f"invalid key id {key_id!r}")
        return self.dir / f"{key_id}{SUFFIX}"

    def exists(self, key_id: str) -> bool:
        return self.path(key_id).exists()

    def generate(self, key_id: str, algorithm: str, bits: int) -> GeneratedKey:
        key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
        if algorithm == "rsa":
            key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        elif algorithm == "ed25519":
            key = ed25519.Ed25519PrivateKey.generate()
        else:
            raise InputError(f"unknown algorithm {algorithm!r}: use rsa or ed25519")
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path = self.write(key_id, pem)
        material = public_key_material(key)
        return GeneratedKey(
            public_key_b64=base64.b64encode(material).decode("ascii"),
            fingerprint=hashlib.sha256(material).hexdigest(),
            path=path,
        )

    def write(self, key_id: str, pem: bytes) -> Path:
        path = self.path(key_id)
        tmp = path.with_suffix(".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, pem)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            self._fsync_dir()
        except OSError as exc:
            raise ExternalError(f"cannot write private key {path}: {exc.strerror}") from exc
        return path

    def destroy(self, key_id: str) -> bool:
        path = self.path(key_id)
        wiped = False
        for p in (path, path.with_suffix(".tmp")):
            try:
                fd = os.open(p, os.O_RDWR)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise ExternalError(f"cannot open {p} to wipe it: {exc.strerror}") from exc
            try:
                size = os.fstat(fd).st_size
                os.write(fd, b"\0" * size)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.unlink(p)
            wiped = True
        if wiped:
            self._fsync_dir()
        return wiped

    def stored_ids(self) -> list[str]:
        return sorted(p.name[: -len(SUFFIX)] for p in self.dir.glob(f"*{SUFFIX}"))

    def _fsync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
