"""The installer never writes or wipes through a link planted in a target directory (the
signer's user can write there): a symlinked keys/, a key file that is a symlink or a hard
link to someone else's file, a file another user owns."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from rotator.adapters.signers.installer import InstallError, apply_bundle


def spec(data: bytes, mode: str = "0600") -> dict[str, str]:
    return {"data": base64.b64encode(data).decode(), "mode": mode}


def bundle(**keys: bytes) -> dict[str, Any]:
    return {
        "version": 1,
        "keys": {f"keys/{name}.pem": spec(data) for name, data in keys.items()},
        "tables": {"KeyTable": spec(b" ".join(k.encode() for k in keys), "0640")},
    }


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    v = tmp_path / "victim"
    v.mkdir()
    (v / "k1.pem").write_bytes(b"someone else's file")
    (v / "secret").write_bytes(b"precious")
    return v


def test_a_symlinked_keys_directory_is_refused(tmp_path: Path, victim: Path) -> None:
    d = tmp_path / "t"
    d.mkdir()
    (d / "keys").symlink_to(victim)
    with pytest.raises(InstallError, match="refusing keys: a symbolic link"):
        apply_bundle(d, bundle(k2=b"new key"))
    assert sorted(p.name for p in victim.iterdir()) == ["k1.pem", "secret"]
    assert (victim / "k1.pem").read_bytes() == b"someone else's file"
    assert not (d / "KeyTable").exists()


def test_a_symlinked_target_directory_is_refused(tmp_path: Path, victim: Path) -> None:
    (tmp_path / "t").symlink_to(victim)
    with pytest.raises(InstallError, match="a symbolic link"):
        apply_bundle(tmp_path / "t", bundle(k2=b"new key"))
    assert sorted(p.name for p in victim.iterdir()) == ["k1.pem", "secret"]


def test_links_in_keys_lose_their_name_only(tmp_path: Path, victim: Path) -> None:
    d = tmp_path / "t"
    apply_bundle(d, bundle(k0=b"ours"))
    os.link(victim / "k1.pem", d / "keys" / "k1.pem")  # a hard link to another's file
    (d / "keys" / "k3.pem").symlink_to(victim / "secret")
    (d / "keys" / "sub").mkdir()  # not a key file: left as it is
    out = apply_bundle(d, bundle(k0=b"ours"))
    assert out["removed"] == 2
    assert sorted(p.name for p in (d / "keys").iterdir()) == ["k0.pem", "sub"]
    assert (victim / "k1.pem").read_bytes() == b"someone else's file"  # not zeroed
    assert (victim / "secret").read_bytes() == b"precious"  # not followed


def test_a_removal_through_a_link_wipes_nothing_outside(tmp_path: Path, victim: Path) -> None:
    d = tmp_path / "t"
    apply_bundle(d, bundle(k0=b"ours"))
    (d / "keys" / "k1.pem").symlink_to(victim / "k1.pem")
    partial = {"version": 2, "remove": ["keys/k1.pem"], "tables": {"KeyTable": spec(b"k0")}}
    assert apply_bundle(d, partial)["removed"] == 1
    assert not (d / "keys" / "k1.pem").is_symlink()
    assert (victim / "k1.pem").read_bytes() == b"someone else's file"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_file_another_user_owns_is_unlinked_not_zeroed(tmp_path: Path) -> None:
    d = tmp_path / "t"
    apply_bundle(d, bundle(k0=b"ours", k1=b"theirs now"))
    theirs = d / "keys" / "k1.pem"
    os.chown(theirs, 65534, 65534)
    witness = theirs.open("rb")  # the inode, read after the wipe
    apply_bundle(d, bundle(k0=b"ours"))
    assert not theirs.exists()
    with witness:
        assert witness.read() == b"theirs now"
