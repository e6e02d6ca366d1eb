"""Private key files (FsKeyStore) and the OpenDKIM signer tables. DKIM signatures made with
the stored keys are checked with dkimpy against the record rotator would publish (the DNS
lookup is answered in-process here; the integration tests use real nameservers)."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from rotator.adapters.keys.files import FsKeyStore, describe_private_key
from rotator.adapters.signers.base import HEADER
from rotator.domain.errors import ExternalError, InputError, SignerError
from rotator.domain.record import build_record, revoked_record
from rotator.ports import GeneratedKey, SigningEntry
from tests.support.legacy_signer import OpenDkimSigner

MESSAGE = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Subject: key rotation\r\n"
    b"Date: Tue, 24 Nov 2026 12:00:00 +0000\r\n"
    b"Message-ID: <1@example.com>\r\n"
    b"\r\n"
    b"Hello Bob.\r\n"
)
SELECTOR = "nov2026.myesp"
DOMAIN = "example.com"
SIG_ALG = {"rsa": b"rsa-sha256", "ed25519": b"ed25519-sha256"}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[FsKeyStore, dict[str, GeneratedKey]]:
    ks = FsKeyStore(tmp_path_factory.mktemp("ks") / "keys")
    return ks, {
        "rsa": ks.generate("krsa", "rsa", 2048),
        "ed25519": ks.generate("ked", "ed25519", 256),
    }


def dkimpy_private_key(pem: bytes) -> bytes:
    """dkimpy signs RSA with the PEM itself; for ed25519 it wants the base64 raw seed
    (RFC 8463), which is taken from the stored PEM."""
    key = serialization.load_pem_private_key(pem, password=None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return base64.b64encode(raw)
    return pem


def dns_answering(record: str, asked: list[bytes]) -> Callable[..., bytes | None]:
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        asked.append(name)
        if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode():
            return record.encode("ascii")
        return None

    return dnsfunc


def sign(pem: bytes, algorithm: str) -> bytes:
    sig = dkim.sign(
        MESSAGE,
        SELECTOR.encode(),
        DOMAIN.encode(),
        dkimpy_private_key(pem),
        signature_algorithm=SIG_ALG[algorithm],
        include_headers=[b"from", b"to", b"subject", b"date"],
    )
    return bytes(sig) + MESSAGE


# --- FsKeyStore -----------------------------------------------------------------------------


@pytest.mark.parametrize(("algorithm", "key_id"), [("rsa", "krsa"), ("ed25519", "ked")])
def test_generated_key_files(
    keys: tuple[FsKeyStore, dict[str, GeneratedKey]], algorithm: str, key_id: str
) -> None:
    ks, gen = keys
    g = gen[algorithm]
    assert g.path == ks.path(key_id) == ks.dir / f"{key_id}.pem"
    assert stat.S_IMODE(os.stat(g.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(ks.dir).st_mode) == 0o700
    assert ks.exists(key_id)
    pem = g.path.read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    alg, bits, material = describe_private_key(pem)
    assert alg == algorithm
    assert bits == (2048 if algorithm == "rsa" else 256)
    # p= is exactly the public half of the stored key
    assert base64.b64decode(g.public_key_b64) == material
    assert g.fingerprint == hashlib.sha256(base64.b64decode(g.public_key_b64)).hexdigest()


def test_public_key_formats(keys: tuple[FsKeyStore, dict[str, GeneratedKey]]) -> None:
    _, gen = keys
    rsa_pub = serialization.load_der_public_key(base64.b64decode(gen["rsa"].public_key_b64))
    assert isinstance(rsa_pub, rsa.RSAPublicKey) and rsa_pub.key_size == 2048
    assert len(base64.b64decode(gen["ed25519"].public_key_b64)) == 32  # raw (RFC 8463)


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_dkim_signature_verifies_against_built_record(
    keys: tuple[FsKeyStore, dict[str, GeneratedKey]], algorithm: str
) -> None:
    _, gen = keys
    g = gen[algorithm]
    signed = sign(g.path.read_bytes(), algorithm)
    asked: list[bytes] = []
    record = build_record(algorithm, g.public_key_b64)
    assert dkim.verify(signed, dnsfunc=dns_answering(record, asked))
    assert asked == [f"{SELECTOR}._domainkey.{DOMAIN}.".encode()]


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_dkim_signature_fails_with_wrong_or_revoked_record(
    keys: tuple[FsKeyStore, dict[str, GeneratedKey]], algorithm: str
) -> None:
    _, gen = keys
    signed = sign(gen[algorithm].path.read_bytes(), algorithm)
    other_key = ed25519.Ed25519PrivateKey.generate() if algorithm == "ed25519" else None
    if other_key is not None:
        raw = other_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        other = build_record("ed25519", base64.b64encode(raw).decode())
    else:
        other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        der = other_rsa.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        other = build_record("rsa", base64.b64encode(der).decode())
    assert not dkim.verify(signed, dnsfunc=dns_answering(other, []))
    assert not dkim.verify(signed, dnsfunc=dns_answering(revoked_record(), []))
    tampered = signed.replace(b"Hello Bob.", b"Hello Eve.")
    record = build_record(algorithm, gen[algorithm].public_key_b64)
    assert not dkim.verify(tampered, dnsfunc=dns_answering(record, []))


def test_destroy_overwrites_with_zeros_then_unlinks(tmp_path: Path) -> None:
    ks = FsKeyStore(tmp_path / "keys")
    g = ks.generate("victim", "ed25519", 256)
    size = g.path.stat().st_size
    assert size > 0
    witness = tmp_path / "witness.pem"  # outside the key dir, same inode
    os.link(g.path, witness)
    assert witness.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert ks.destroy("victim") is True
    assert not g.path.exists()
    assert not ks.exists("victim")
    data = witness.read_bytes()
    assert len(data) == size
    assert data == b"\0" * size
    assert ks.destroy("victim") is False  # idempotent


def test_destroy_also_wipes_a_leftover_temp_file(tmp_path: Path) -> None:
    ks = FsKeyStore(tmp_path / "keys")
    ks.prepare()
    tmp = ks.dir / "half.tmp"
    tmp.write_bytes(b"-----BEGIN PRIVATE KEY-----\nhalf written\n")
    witness = tmp_path / "witness"
    os.link(tmp, witness)
    assert ks.destroy("half") is True
    assert not tmp.exists()
    assert set(witness.read_bytes()) == {0}


def test_destroy_many_wipes_each_key_and_its_temp_files_and_nothing_else(
    tmp_path: Path,
) -> None:
    ks = FsKeyStore(tmp_path / "keys")
    for key_id in ("a1", "a2", "a3", "keep"):
        ks.generate(key_id, "ed25519", 256)
    temps = [ks.dir / ".a1.0123abcd.tmp", ks.dir / "a2.tmp", ks.dir / ".keep.0123abcd.tmp"]
    for t in temps:
        t.write_bytes(b"-----BEGIN PRIVATE KEY-----\nhalf written\n")
    witnesses = []
    for i, path in enumerate([ks.path("a1"), temps[0], temps[1]]):
        witnesses.append(tmp_path / f"witness{i}")
        os.link(path, witnesses[-1])
    root = os.geteuid() == 0
    if root:  # another user's file: refused, in its place, and the others go on
        os.chown(ks.path("a3"), 65534, 65534)
    results = ks.destroy_many(["a1", "a2", "a3", "gone"])
    assert results[:2] == [True, True] and results[3] is False
    assert isinstance(results[2], ExternalError) if root else results[2] is True
    assert all(set(w.read_bytes()) == {0} for w in witnesses)
    left = {".keep.0123abcd.tmp", "keep.pem"} | ({"a3.pem"} if root else set())
    assert {p.name for p in ks.dir.iterdir()} == left


def test_stored_ids(tmp_path: Path) -> None:
    ks = FsKeyStore(tmp_path / "keys")
    assert ks.stored_ids() == []
    for key_id in ("bbb", "aaa", "ccc"):
        ks.generate(key_id, "ed25519", 256)
    (ks.dir / "notes.txt").write_text("not a key")
    assert ks.stored_ids() == ["aaa", "bbb", "ccc"]
    ks.destroy("bbb")
    assert ks.stored_ids() == ["aaa", "ccc"]


def test_existing_key_dir_is_tightened(tmp_path: Path) -> None:
    d = tmp_path / "keys"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    FsKeyStore(d).prepare()
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700


@pytest.mark.parametrize("bad", ["../escape", "a/b", "", "x" * 65, "k.pem", "k\nx"])
def test_key_ids_cannot_leave_the_directory(tmp_path: Path, bad: str) -> None:
    ks = FsKeyStore(tmp_path / "keys")
    with pytest.raises(InputError, match="invalid key id"):
        ks.path(bad)
    with pytest.raises(InputError):
        ks.destroy(bad)


def test_key_id_with_trailing_newline_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="invalid key id"):
        FsKeyStore(tmp_path / "keys").path("k\n")


def test_unknown_algorithm(tmp_path: Path) -> None:
    ks = FsKeyStore(tmp_path / "keys")
    with pytest.raises(InputError, match="'dsa'"):
        ks.generate("k1", "dsa", 1024)
    assert ks.stored_ids() == []


# --- the OpenDKIM target of a config with the older [signer] table ------------------------


def entries(tmp_path: Path) -> list[SigningEntry]:
    return [
        SigningEntry(
            "k2", "example.org", "nov2026.myesp", str(tmp_path / "keys/k2.pem"), "*@example.org"
        ),
        SigningEntry(
            "k1", "example.com", "nov2026.myesp", str(tmp_path / "keys/k1.pem"), "*@example.com"
        ),
    ]


def table_lines(path: Path) -> list[str]:
    text = path.read_text()
    assert text.startswith(f"# {HEADER}")
    return [ln for ln in text.splitlines() if ln and not ln.startswith("#")]


def test_signer_writes_tables(tmp_path: Path) -> None:
    kt, st = tmp_path / "opendkim/KeyTable", tmp_path / "opendkim/SigningTable"
    OpenDkimSigner(kt, st).write(entries(tmp_path))
    assert table_lines(kt) == [
        f"k1 example.com:nov2026.myesp:{tmp_path}/keys/k1.pem",
        f"k2 example.org:nov2026.myesp:{tmp_path}/keys/k2.pem",
    ]
    assert table_lines(st) == ["*@example.com k1", "*@example.org k2"]
    assert sorted(p.name for p in kt.parent.iterdir()) == ["KeyTable", "SigningTable"]


def test_signer_rewrites_atomically(tmp_path: Path) -> None:
    kt, st = tmp_path / "KeyTable", tmp_path / "SigningTable"
    signer = OpenDkimSigner(kt, st)
    signer.write(entries(tmp_path))
    with kt.open() as old_kt, st.open() as old_st:  # a reader holding the old files
        old_inodes = (os.fstat(old_kt.fileno()).st_ino, os.fstat(old_st.fileno()).st_ino)
        signer.write(entries(tmp_path)[:1])
        # replaced by rename, not truncated in place: the reader still sees a whole file
        assert len(table_lines_from(old_kt.read())) == 2
        assert len(table_lines_from(old_st.read())) == 2
    assert (kt.stat().st_ino, st.stat().st_ino) != old_inodes
    assert table_lines(kt) == [f"k2 example.org:nov2026.myesp:{tmp_path}/keys/k2.pem"]
    assert table_lines(st) == ["*@example.org k2"]
    assert not list(tmp_path.glob(".*.tmp"))
    signer.write([])
    assert table_lines(kt) == [] and table_lines(st) == []


def table_lines_from(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln and not ln.startswith("#")]


def test_signer_runs_reload_once(tmp_path: Path) -> None:
    marker = tmp_path / "reloads"
    reload = ["sh", "-c", f"echo reloaded >> '{marker}'"]
    signer = OpenDkimSigner(tmp_path / "KeyTable", tmp_path / "SigningTable", reload)
    signer.write(entries(tmp_path))
    assert marker.read_text() == "reloaded\n"
    signer.write(entries(tmp_path))
    assert marker.read_text() == "reloaded\nreloaded\n"


def test_signer_reload_sees_the_new_tables(tmp_path: Path) -> None:
    kt = tmp_path / "KeyTable"
    seen = tmp_path / "seen"
    reload = ["sh", "-c", f"cat '{kt}' > '{seen}'"]
    OpenDkimSigner(kt, tmp_path / "SigningTable", reload).write(entries(tmp_path))
    assert table_lines_from(seen.read_text()) == table_lines(kt)


def test_signer_failing_reload(tmp_path: Path) -> None:
    reload = ["sh", "-c", "echo boom >&2; exit 3"]
    signer = OpenDkimSigner(tmp_path / "KeyTable", tmp_path / "SigningTable", reload)
    with pytest.raises(SignerError) as info:
        signer.write(entries(tmp_path))
    msg = str(info.value)
    assert "exited 3" in msg
    assert "boom" in msg
    assert "\n" not in msg
    assert info.value.reason == msg


def test_signer_missing_reload_command(tmp_path: Path) -> None:
    signer = OpenDkimSigner(
        tmp_path / "KeyTable", tmp_path / "SigningTable", ["/nonexistent/opendkim-reload"]
    )
    with pytest.raises(SignerError, match="opendkim-reload"):
        signer.write(entries(tmp_path))


def test_signer_reload_timeout(tmp_path: Path) -> None:
    signer = OpenDkimSigner(
        tmp_path / "KeyTable", tmp_path / "SigningTable", ["sleep", "5"], timeout=0.2
    )
    with pytest.raises(SignerError, match="sleep"):
        signer.write(entries(tmp_path))


def test_signer_unwritable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    signer = OpenDkimSigner(blocker / "KeyTable", blocker / "SigningTable")
    with pytest.raises(SignerError, match="cannot write signer tables"):
        signer.write(entries(tmp_path))
