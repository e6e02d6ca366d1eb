"""Private keys on the filesystem: one PKCS#8 PEM per key, mode 0600 in a 0700 directory.

Keys are written atomically: a temp file with a random name opened O_CREAT|O_EXCL|
O_NOFOLLOW (a planted file or symlink can never receive key material), fsync, rename,
directory fsync. Destroying overwrites with zeros, fsyncs and unlinks, and opens with
O_NOFOLLOW after checking that the file is a regular file of ours: a planted symlink never
makes rotator zero something else. Nothing here logs key material. The directory is only
created or checked when a key is written, so commands that only read need no write access.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from ...domain.errors import ExternalError, InputError
from ...ports import GeneratedKey, Materialized

_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SUFFIX = ".pem"
TMP_SUFFIX = ".tmp"
WIPE_AT_ONCE = 16


def public_key_material(private_key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    """The bytes that go into p=: SubjectPublicKeyInfo DER for RSA (RFC 6376 3.6.1),
    the raw 32-byte key for ed25519 (RFC 8463 section 4.2)."""
    pub = private_key.public_key()
    if isinstance(pub, ed25519.Ed25519PublicKey):
        return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


MAX_PEM = 16384  # octets: a 4096-bit RSA key in PEM is about 3.3 KiB
RSA_MIN, RSA_MAX, RSA_RECOMMENDED = 1024, 4096, 2048  # RFC 8301 section 3.2


def _load(pem: bytes, ours: bool = False) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    # cap before parsing: a huge key costs seconds to load and every signature after it
    if len(pem) > MAX_PEM:
        raise InputError(f"key file is {len(pem)} octets; a DKIM private key is under {MAX_PEM}")
    try:
        # `ours`: a key rotator generated itself (the pool's): the RSA consistency check
        # (tens of milliseconds per key) guards against keys from elsewhere
        key = serialization.load_pem_private_key(
            pem, password=None, unsafe_skip_rsa_key_validation=ours
        )
    except (ValueError, TypeError) as exc:
        raise InputError(f"not an unencrypted PEM private key: {exc}") from None
    if isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        return key
    raise InputError("private key must be RSA or Ed25519")


def describe_private_key(pem: bytes, ours: bool = False) -> tuple[str, int, bytes]:
    """(algorithm, bits, public material) of a PEM private key; InputError if unusable."""
    key = _load(pem, ours)
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa", key.key_size, public_key_material(key)
    return "ed25519", 256, public_key_material(key)


def customer_private_key(pem: bytes) -> tuple[str, int, bytes, bytes]:
    """A customer's key checked against RFC 8301 (RSA 1024 to 4096 bits, e=65537; Ed25519)
    and re-serialised: (algorithm, bits, public material, PKCS#8 PEM of our own making),
    so that nothing of the customer's file but the key itself is ever stored."""
    key = _load(pem)
    if isinstance(key, rsa.RSAPrivateKey):
        e = key.public_key().public_numbers().e
        if e != 65537:
            raise InputError(f"RSA public exponent {e}: DKIM keys use e=65537 (RFC 8301)")
        if not RSA_MIN <= key.key_size <= RSA_MAX:
            raise InputError(
                f"RSA key of {key.key_size} bits: RFC 8301 needs {RSA_MIN} to {RSA_MAX} bits "
                f"({RSA_RECOMMENDED} recommended)"
            )
    algorithm, bits, material = describe_private_key(pem)
    clean = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return algorithm, bits, material, clean


def generate_pem(algorithm: str, bits: int) -> tuple[bytes, bytes]:
    """(PKCS#8 PEM, public key material) of a fresh key."""
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
    return pem, public_key_material(key)


class FsKeyStore:
    def __init__(self, directory: Path | str) -> None:
        self.dir = Path(directory)
        self._ready = False

    @staticmethod
    def describe(pem: bytes) -> tuple[str, int, bytes]:
        return describe_private_key(pem)

    @staticmethod
    def customer_key(pem: bytes) -> tuple[str, int, bytes, bytes]:
        return customer_private_key(pem)

    def path(self, key_id: str) -> Path:
        if not _KEY_ID.fullmatch(key_id):
            raise InputError(f"invalid key id {key_id!r}")
        return self.dir / f"{key_id}{SUFFIX}"

    def key_file(self, key_id: str) -> str:
        if not _KEY_ID.fullmatch(key_id):
            raise InputError(f"invalid key id {key_id!r}")
        return f"{self.dir}/{key_id}{SUFFIX}"

    def exists(self, key_id: str) -> bool:
        return self.path(key_id).exists()

    def prepare(self) -> None:
        """Create the directory 0700, or check an existing one is ours and closed to
        others (tightening it if it is not)."""
        if self._ready:
            return
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            st = os.stat(self.dir)
            if st.st_uid != os.geteuid():
                raise ExternalError(
                    f"key_dir {self.dir} is owned by uid {st.st_uid}, not by this user (uid "
                    f"{os.geteuid()}); run rotator as its owner"
                )
            if stat.S_IMODE(st.st_mode) & 0o077:
                os.chmod(self.dir, 0o700)
        except OSError as exc:
            raise ExternalError(
                f"key_dir {self.dir}: {exc.strerror}; it must be a directory this user owns, "
                "mode 0700"
            ) from None
        self._ready = True

    def generate(self, key_id: str, algorithm: str, bits: int) -> GeneratedKey:
        pem, material = generate_pem(algorithm, bits)
        path = self.write(key_id, pem)
        return GeneratedKey(
            public_key_b64=base64.b64encode(material).decode("ascii"),
            fingerprint=hashlib.sha256(material).hexdigest(),
            path=path,
        )

    def write(self, key_id: str, pem: bytes) -> Path:
        path = self.path(key_id)
        self.prepare()
        try:
            write_key_file(path, key_id, pem)
        except OSError as exc:
            raise ExternalError(f"cannot write private key {path}: {exc.strerror}") from exc
        return path

    def read(self, key_id: str) -> bytes:
        """A key file's PEM: opened O_NOFOLLOW, a regular file of this user's, capped."""
        path = self.path(key_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise ExternalError(f"cannot read private key {path}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                raise ExternalError(f"refusing to read {path}: not a regular file of this user")
            return fh.read(MAX_PEM + 1)

    def destroy(self, key_id: str) -> bool:
        """Overwrite with zeros, fsync, unlink: the key and any temp file of it."""
        (result,) = self.destroy_many([key_id])
        if isinstance(result, ExternalError):
            raise result
        return result

    def destroy_many(self, key_ids: Sequence[str]) -> list[bool | ExternalError]:
        """destroy() of many keys: one directory scan for their temp files, the files
        wiped WIPE_AT_ONCE at a time (the file system commits concurrent fsyncs together:
        0.4 ms a key instead of 9 on a 2-core development VM), one directory fsync."""

        def wipe(paths: list[Path]) -> bool | ExternalError:
            wiped = False
            try:
                for p in paths:
                    wiped = self._wipe(p) or wiped
            except ExternalError as exc:
                return exc
            return wiped

        files = self._files_of(key_ids)
        if len(files) < 2:
            results = [wipe(paths) for paths in files]
        else:
            with ThreadPoolExecutor(min(WIPE_AT_ONCE, len(files)), "wipe") as pool:
                results = list(pool.map(wipe, files))
        if any(r is True for r in results):
            fsync_dir(self.dir)
        return results

    def _files_of(self, key_ids: Sequence[str]) -> list[list[Path]]:
        """Each key's file and the temp files of interrupted writes of it (ours,
        .<id>.<random>.tmp, and the older <id>.tmp)."""
        files = {key_id: [self.path(key_id)] for key_id in key_ids}
        if self.dir.is_dir():
            with os.scandir(self.dir) as entries:
                for entry in entries:
                    name = entry.name
                    if not name.endswith(TMP_SUFFIX):
                        continue
                    of = name[1:].split(".", 1)[0] if name[0] == "." else name[: -len(TMP_SUFFIX)]
                    if of in files:
                        files[of].append(self.dir / name)
        return [files[key_id] for key_id in key_ids]

    def _wipe(self, p: Path) -> bool:
        try:
            fd = os.open(p, os.O_RDWR | os.O_NOFOLLOW)
        except FileNotFoundError:
            return False
        except OSError as exc:
            if os.path.islink(p):  # never follow a planted link to zero its target
                os.unlink(p)
                return True
            raise ExternalError(f"cannot open {p} to wipe it: {exc.strerror}") from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                raise ExternalError(f"refusing to wipe {p}: not a regular file owned by this user")
            os.write(fd, b"\0" * st.st_size)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.unlink(p)
        return True

    def stored_ids(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        return sorted(p.name[: -len(SUFFIX)] for p in self.dir.glob(f"*{SUFFIX}"))

    def leftovers(self) -> list[Path]:
        """Temp files an interrupted write left behind (they may hold key material)."""
        if not self.dir.is_dir():
            return []
        return sorted(self.dir.glob(f"*{TMP_SUFFIX}"))

    def wipe_leftovers(self) -> int:
        found = self.leftovers()
        for p in found:
            self._wipe(p)
        if found:
            fsync_dir(self.dir)
        return len(found)

    def materialize(self, ids: Collection[str]) -> Materialized:
        """Nothing to do: this directory is the store itself."""
        return Materialized()


def write_key_file(path: Path, key_id: str, pem: bytes) -> None:
    """A private key at `path` (0600), whole or not at all: a temp file with a random name
    beside it (O_EXCL|O_NOFOLLOW: a planted file or symlink never receives key material),
    fsynced, renamed, the directory fsynced. OSError as it comes."""
    tmp = path.parent / f".{key_id}.{secrets.token_hex(8)}{TMP_SUFFIX}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
