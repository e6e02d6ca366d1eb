"""Writes to a signer target without a real signer: the removal alone (an emergency, an
offboarding), and the version 4 bundle a deliver command gets a line at a time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rotator.adapters.signers import bundle
from rotator.adapters.signers.fleet import SignerFleet
from rotator.adapters.signers.installer import MAX_LINE
from rotator.domain.errors import SignerError

from .test_signer_targets import INSTALLER, numbered, target


def teeing(tmp_path: Path, name: str) -> tuple[str, ...]:
    """A deliver command that keeps a copy of what it is sent, then runs the installer."""
    script = f'tee -a "{tmp_path}/{name}.lines" | exec "$0" -I "$1" "$2"'
    return ("sh", "-c", script, sys.executable, str(INSTALLER), str(tmp_path / name))


def sent(tmp_path: Path, name: str) -> list[dict[str, Any]]:
    path = tmp_path / f"{name}.lines"
    lines = path.read_bytes().splitlines(keepends=True)
    path.unlink()
    assert all(len(line) <= MAX_LINE for line in lines)
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("remote", [False, True])
def test_a_removal_writes_the_tables_alone(tmp_path: Path, remote: bool) -> None:
    kw: dict[str, Any] = {"deliver": teeing(tmp_path, "t")} if remote else {}
    t = target(tmp_path, "t", key_grace=300, **kw)
    fleet = SignerFleet([t], tmp_path / "lock")
    keys = [numbered(tmp_path, i) for i in range(6)]
    (result,) = fleet.apply(lambda: keys)
    assert result.ok, result.detail
    out = tmp_path / "t" / "keys"
    before = {p.name: p.stat().st_ino for p in out.iterdir()}
    if remote:
        complete = sent(tmp_path, "t")
        assert complete[0] == {"version": 4, "manage_keys": True, "hold": True}
        assert [x["key"] for x in complete if "key" in x] == [f"keys/k{i}.pem" for i in range(6)]
        assert complete[-1] == {"end": {"tables": 1, "keys": 6}}
    # a compromise: k0 out of the tables and its file wiped at once
    (result,) = fleet.withdraw([keys[0]], lambda: keys[1:], wipe=True)
    assert result.ok, result.detail
    after = {p.name: p.stat().st_ino for p in out.iterdir()}
    assert sorted(after) == [f"k{i}.pem" for i in range(1, 6)]
    assert all(after[n] == before[n] for n in after)  # no other key file rewritten
    table = json.loads((tmp_path / "t" / "signing.json").read_text())
    patterns = sorted(s["pattern"] for s in table["senders"])
    assert patterns == [f"*@d{i}.example" for i in range(1, 6)]
    if remote:
        removal = sent(tmp_path, "t")
        assert not [x for x in removal if "key" in x]  # no key file travels
        assert {"remove": ["keys/k0.pem"]} in removal
    # an offboarding: k1 out of the tables, its file kept for the grace (mail in flight)
    (result,) = fleet.withdraw([keys[1]], lambda: keys[2:], wipe=False)
    assert result.ok, result.detail
    assert (out / "k1.pem").exists()
    assert t.departed is not None and "keys/k1.pem" in t.departed.read()
    assert len(json.loads((tmp_path / "t" / "signing.json").read_text())["senders"]) == 4


def test_a_cut_stream_installs_no_table_and_wipes_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "t"
    (directory / "keys").mkdir(parents=True)
    (directory / "keys" / "old.pem").write_bytes(b"a key the bundle drops")
    (directory / "signing.json").write_text("before")
    tables = {"signing.json": (b"after", 0o640)}
    keys = [("keys/new.pem", (b"key", 0o600))]
    lines = list(bundle.frames(tables, keys, None, False, True))
    for cut in (lines[:-1], [*lines[:-1], b'{"end": {"tables": 1, "keys": 2}}\n']):
        proc = subprocess.run(
            [sys.executable, "-I", str(INSTALLER), str(directory)],
            input=b"".join(cut),
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert proc.returncode == 1, proc.stdout
        assert b"nothing" in proc.stderr
        assert (directory / "signing.json").read_text() == "before"
        assert (directory / "keys" / "old.pem").exists()
    # whole, it goes in: the table, and the dropped key wiped
    reply = bundle.send([sys.executable, "-I", str(INSTALLER), str(directory)], 30, lines)
    assert reply["written"] == 2 and reply["removed"] == 1
    assert (directory / "signing.json").read_text() == "after"


def test_a_key_that_cannot_be_read_mid_stream_changes_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "t"
    directory.mkdir()
    (directory / "signing.json").write_text("before")

    def keys() -> Any:
        yield "keys/a.pem", (b"key a", 0o600)
        raise SignerError("cannot read key b: No such file or directory")

    lines = bundle.frames({"signing.json": (b"after", 0o640)}, keys(), None, False, True)
    with pytest.raises(SignerError, match="cannot read key b"):
        bundle.send([sys.executable, "-I", str(INSTALLER), str(directory)], 30, lines)
    assert (directory / "signing.json").read_text() == "before"


def test_tables_travel_in_chunks_a_line_each() -> None:
    big = b"x" * (bundle.CHUNK * 2 + 10)
    lines = list(bundle.frames({"T": (big, 0o640), "E": (b"", 0o640)}, [], ["keys/a"], False, True))
    parsed = [json.loads(line) for line in lines]
    assert [p.get("table") for p in parsed if "table" in p] == ["E", "T", "T", "T"]
    assert parsed[1] == {"remove": ["keys/a"]}
    assert max(len(line) for line in lines) < MAX_LINE


def test_a_deliver_command_that_hangs_is_cut_off(tmp_path: Path) -> None:
    with pytest.raises(SignerError, match="timed out after 1s"):
        bundle.send(["sleep", "30"], 1, iter([b"{}\n"]))
