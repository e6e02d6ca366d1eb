"""The envelope of keys sealed in a database: a data key per key, wrapped by the KEK, the
key id bound in as associated data; the KEK file and its checks; re-wrapping."""

from __future__ import annotations

import base64
import os
import pwd
from pathlib import Path

import pytest

from rotator.adapters.keys.envelope import Envelope, Kek, create_kek, read_kek
from rotator.adapters.keys.files import generate_pem
from rotator.adapters.keys.sealed import rewrap
from rotator.adapters.keys.sealed_sqlite import SqliteSealedKeys
from rotator.domain.errors import ConfigError, StoreError

PEM = generate_pem("ed25519", 256)[0]


def kek() -> Kek:
    return Kek(os.urandom(32))


def test_a_sealed_key_opens_to_its_pem() -> None:
    env = Envelope(kek())
    blob = env.seal("k1", PEM)
    assert env.open("k1", blob) == PEM
    assert PEM not in blob and b"PRIVATE" not in blob
    assert blob[0] == 1 and Envelope.kek_of(blob) == env.kek.id


def test_each_seal_has_its_own_data_key_and_nonces() -> None:
    env = Envelope(kek())
    one, two = env.seal("k1", PEM), env.seal("k1", PEM)
    assert one != two and one[9:] != two[9:]
    assert len(one) == 81 + len(PEM) + 16


def test_another_kek_is_refused_naming_both() -> None:
    blob = Envelope(kek()).seal("k1", PEM)
    other = Envelope(kek())
    with pytest.raises(ConfigError) as caught:
        other.open("k1", blob)
    line = str(caught.value)
    assert "\n" not in line
    assert f"wrapped by KEK {Envelope.kek_of(blob)}" in line and other.kek.id in line


def test_a_kek_with_the_same_id_but_other_bytes_does_not_open() -> None:
    # an id is 64 bits of a MAC: a forged id still does not open the data key
    env = Envelope(kek())
    blob = bytearray(env.seal("k1", PEM))
    forged = kek()
    blob[1:9] = bytes.fromhex(forged.id)
    with pytest.raises(StoreError, match=r"^sealed key k1: its data key \(KEK"):
        Envelope(forged).open("k1", bytes(blob))


def test_a_row_moved_under_another_key_id_does_not_open() -> None:
    env = Envelope(kek())
    a, b = env.seal("key-a", PEM), env.seal("key-b", generate_pem("ed25519", 256)[0])
    for key_id, blob in (("key-a", b), ("key-b", a)):
        with pytest.raises(StoreError, match="rows swapped") as caught:
            env.open(key_id, blob)
        assert str(caught.value).startswith(f"sealed key {key_id}: ")
        assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "offset,what",
    [
        (81, "its encrypted key"),  # the PEM's ciphertext
        (-1, "its encrypted key"),  # its tag
        (70, "its encrypted key"),  # its nonce
        (30, "its data key"),  # the wrapped data key
        (10, "its data key"),  # the wrap's nonce
    ],
)
def test_any_altered_octet_is_refused(offset: int, what: str) -> None:
    env = Envelope(kek())
    blob = bytearray(env.seal("k1", PEM))
    blob[offset] ^= 0x01
    with pytest.raises(StoreError, match=f"^sealed key k1: {what}"):
        env.open("k1", bytes(blob))


@pytest.mark.parametrize("blob", [b"", b"\x01short", b"\x02" + bytes(200)])
def test_what_is_no_sealed_key_of_this_version_is_refused(blob: bytes) -> None:
    with pytest.raises(StoreError, match="not a sealed key of this version"):
        Envelope(kek()).open("k1", blob)
    assert Envelope.kek_of(blob) == ""


def test_a_previous_kek_still_opens_and_the_current_one_seals() -> None:
    old, new = kek(), kek()
    blob = Envelope(old).seal("k1", PEM)
    both = Envelope(new, [old])
    assert both.open("k1", blob) == PEM
    assert Envelope.kek_of(both.seal("k2", PEM)) == new.id


def test_rewrap_moves_the_data_key_only() -> None:
    old, new = kek(), kek()
    blob = Envelope(old).seal("k1", PEM)
    moved = Envelope(old).rewrap("k1", blob, new)
    assert moved[81:] == blob[81:] and moved[69:81] == blob[69:81]  # same ciphertext
    assert Envelope(new).open("k1", moved) == PEM
    with pytest.raises(ConfigError):
        Envelope(old).open("k1", moved)


def test_rewrapping_every_row(tmp_path: Path) -> None:
    old, new = kek(), kek()
    sealed = SqliteSealedKeys(tmp_path / "keys.db")
    env = Envelope(old)
    for i in range(5):
        sealed.put(f"k{i}", env.seal(f"k{i}", PEM))
    done = rewrap(sealed, env, new)
    assert (done.kek, done.rewrapped, done.already, done.left) == (new.id, 5, 0, [])
    for key_id in sealed.ids():
        blob = sealed.get(key_id)
        assert blob is not None
        assert Envelope(new).open(key_id, blob) == PEM
        with pytest.raises(ConfigError):
            Envelope(old).open(key_id, blob)
    again = rewrap(sealed, Envelope(new, [old]), new)
    assert (again.rewrapped, again.already) == (0, 5)
    sealed.close()


# --- the KEK file ---------------------------------------------------------------------------


def test_kek_create_writes_base64_mode_0400_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "keys.kek"
    made = create_kek(path)
    assert path.stat().st_mode & 0o777 == 0o400
    text = path.read_text()
    assert text.endswith("\n") and len(text.strip()) == 44
    assert base64.b64decode(text) == made.key
    assert read_kek(path).id == made.id and made.id not in text
    assert made.key.hex() not in repr(made)


def test_kek_create_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "keys.kek"
    create_kek(path)
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="exists: a KEK is never overwritten"):
        create_kek(path)
    assert path.read_bytes() == before


def write_kek(path: Path, mode: int, text: bytes | None = None) -> Path:
    path.write_bytes(text if text is not None else base64.b64encode(os.urandom(32)) + b"\n")
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o400, 0o600])
def test_a_kek_of_this_user_0400_or_0600_is_read(tmp_path: Path, mode: int) -> None:
    assert len(read_kek(write_kek(tmp_path / "kek", mode)).key) == 32


@pytest.mark.parametrize("mode", [0o440, 0o640, 0o644, 0o604, 0o700])
def test_a_kek_others_may_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = write_kek(tmp_path / "kek", mode)
    with pytest.raises(ConfigError, match=rf"has mode {mode:04o}: chmod 0400"):
        read_kek(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the file away")
def test_a_kek_of_another_user_is_refused(tmp_path: Path) -> None:
    path = write_kek(tmp_path / "kek", 0o400)
    os.chown(path, pwd.getpwnam("nobody").pw_uid, -1)
    with pytest.raises(ConfigError, match=r"belongs to uid .*, not to this user"):
        read_kek(path)


def test_a_kek_through_a_symlink_is_refused(tmp_path: Path) -> None:
    target = write_kek(tmp_path / "real", 0o400)
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(ConfigError, match=r"^KEK .*link: "):
        read_kek(tmp_path / "link")


@pytest.mark.parametrize(
    "text",
    [b"", b"not base64!\n", base64.b64encode(os.urandom(16)), os.urandom(32)],
    ids=["empty", "not-base64", "short", "raw"],
)
def test_a_kek_that_is_not_32_octets_in_base64_is_refused(tmp_path: Path, text: bytes) -> None:
    path = write_kek(tmp_path / "kek", 0o400, text)
    with pytest.raises(ConfigError, match="not 32 octets in base64"):
        read_kek(path)


def test_a_missing_kek_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="kek-create"):
        read_kek(tmp_path / "absent")


def test_a_systemd_credential_is_taken_as_systemd_made_it(tmp_path: Path) -> None:
    # systemd grants the unit's user an ACL on a root-owned 0440 file (or chowns it)
    creds = tmp_path / "credentials"
    creds.mkdir()
    path = write_kek(creds / "keys.kek", 0o440)
    assert len(read_kek(path, str(creds)).key) == 32
    with pytest.raises(ConfigError):
        read_kek(path)  # the same file outside $CREDENTIALS_DIRECTORY
