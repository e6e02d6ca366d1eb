"""Key files a signer target keeps after their keys left its tables: a signer's workers on
the old configuration may still open them, so they are wiped only once the target has
reloaded, passed its probe and its grace has run (in a later write or sweep, or after a
restart); an emergency's compromised keys go at once."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from rotator.adapters.signers.fleet import SignerFleet
from rotator.adapters.signers.installer import apply_bundle
from rotator.adapters.signers.target import SignerTarget
from rotator.config.targets import ProbeConfig
from rotator.domain.errors import ConfigError
from rotator.ports import SigningEntry
from tests.unit.test_signer_targets import (
    INSTALLER,
    change,
    numbered,
    spec,
    target,
    targets,
)


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def setup(tmp_path: Path, remote: bool = False, **kw: Any) -> tuple[SignerTarget, Path]:
    """A json target (through the installer as a command if `remote`) and its keys/."""
    out = tmp_path / "t"
    if remote:
        out = tmp_path / "t-remote"
        kw["deliver"] = (sys.executable, "-I", str(INSTALLER), str(out))
    return target(tmp_path, "t", **kw), out / "keys"


def first_and_second(tmp_path: Path) -> tuple[list[SigningEntry], SigningEntry]:
    return [numbered(tmp_path, i) for i in range(3)], numbered(tmp_path, 9)


@pytest.mark.parametrize("remote", [False, True])
def test_a_key_that_left_stays_until_the_grace_has_run(tmp_path: Path, remote: bool) -> None:
    clock = Clock()
    t, keys = setup(tmp_path, remote)  # the default grace
    fleet = SignerFleet([t], tmp_path / "lock", now=clock)
    first, new = first_and_second(tmp_path)
    assert all(r.ok for r in fleet.apply(lambda: first))
    witness = (keys / "k0.pem").open("rb")  # its inode, read after the wipe
    # an activation: k9 replaces k0 in the tables; k0's file stays for the old workers
    (result,) = fleet.change(change([new], [first[0]], [*first[1:], new]), check=[new])
    assert result.ok, result.detail
    assert (keys / "k0.pem").exists() and (keys / "k9.pem").exists()
    table = json.loads((keys.parent / "signing.json").read_text())
    assert "k0" not in json.dumps(table)  # the tables no longer name it
    clock.t += 299
    assert fleet.sweep() == 0 and (keys / "k0.pem").exists()
    clock.t += 2  # 300 s after the reload and probe
    assert fleet.sweep() == 1
    assert not (keys / "k0.pem").exists()
    with witness:
        assert witness.read() == b"\0" * len(b"-----BEGIN PRIVATE KEY-----\n")  # zeroed
    assert sorted(p.name for p in keys.iterdir()) == ["k1.pem", "k2.pem", "k9.pem"]
    assert fleet.sweep() == 0  # nothing left held


def test_a_later_write_wipes_what_has_served_its_grace(tmp_path: Path) -> None:
    clock = Clock()
    t, keys = setup(tmp_path, key_grace=5)
    fleet = SignerFleet([t], tmp_path / "lock", now=clock)
    first, new = first_and_second(tmp_path)
    fleet.apply(lambda: first)
    fleet.change(change([new], [first[0]], [*first[1:], new]))
    clock.t += 6
    other = numbered(tmp_path, 8)
    now = [*first[2:], new, other]
    (result,) = fleet.change(change([other], [first[1]], now))
    assert result.ok
    # k0 has served its grace: wiped by this write; k1 has just left: held
    assert sorted(p.name for p in keys.iterdir()) == ["k1.pem", "k2.pem", "k8.pem", "k9.pem"]


def test_a_complete_write_holds_what_it_drops_too(tmp_path: Path) -> None:
    clock = Clock()
    t, keys = setup(tmp_path, remote=True, key_grace=5)
    fleet = SignerFleet([t], tmp_path / "lock", now=clock)
    first, _ = first_and_second(tmp_path)
    fleet.apply(lambda: first)
    assert all(r.ok for r in fleet.apply(lambda: first[1:]))  # a sync without k0
    assert (keys / "k0.pem").exists()
    clock.t += 6
    assert fleet.sweep() == 1 and not (keys / "k0.pem").exists()


def test_an_emergency_wipes_the_compromised_keys_at_once(tmp_path: Path) -> None:
    clock = Clock()
    t, keys = setup(tmp_path)
    fleet = SignerFleet([t], tmp_path / "lock", now=clock)
    first, new = first_and_second(tmp_path)
    fleet.apply(lambda: first)
    fleet.change(change([new], [first[0]], [*first[1:], new]))  # k0 held
    # k1 compromised: it leaves the tables and its copy goes in the same write, before
    # the reload; k0, which left in a normal rotation, keeps its grace
    reloads = tmp_path / "reloads"
    t.config = dataclasses.replace(t.config, reload=("sh", "-c", f"ls {keys} >> {reloads}"))
    (result,) = fleet.apply(lambda: [first[2], new], wipe={"k1"}.__contains__)
    assert result.ok, result.detail
    assert not (keys / "k1.pem").exists()
    assert "k1.pem" not in reloads.read_text()  # gone before the signer reloaded
    assert (keys / "k0.pem").exists()
    clock.t += 301
    assert fleet.sweep() == 1 and sorted(p.name for p in keys.iterdir()) == ["k2.pem", "k9.pem"]


def test_a_restart_after_the_grace_still_wipes(tmp_path: Path) -> None:
    clock = Clock()
    t, keys = setup(tmp_path)
    first, new = first_and_second(tmp_path)
    fleet = SignerFleet([t], tmp_path / "lock", now=clock)
    fleet.apply(lambda: first)
    fleet.change(change([new], [first[0]], [*first[1:], new]))
    assert (keys / "k0.pem").exists()
    # a new process: new target objects, the same state beside the signer lock
    clock.t += 301
    again, _ = setup(tmp_path)
    assert SignerFleet([again], tmp_path / "lock", now=clock).sweep() == 1
    assert not (keys / "k0.pem").exists()


def test_a_target_that_failed_its_probe_keeps_the_file_until_a_probe_passes(
    tmp_path: Path,
) -> None:
    clock = Clock()
    dead = ProbeConfig(kind="milter", address="inet:1@127.0.0.1", timeout=0.2)
    t, keys = setup(tmp_path, key_grace=5)
    fleet = SignerFleet([t], tmp_path / "lock", now=clock)
    first, new = first_and_second(tmp_path)
    fleet.apply(lambda: first)
    probed, _ = setup(tmp_path, key_grace=5, probe=dead)
    fleet = SignerFleet([probed], tmp_path / "lock", now=clock)  # a restart, probe down
    (result,) = fleet.change(change([new], [first[0]], [*first[1:], new]), check=[new])
    assert not result.ok
    clock.t += 3600
    # the signer may still be on the old tables: the grace has not started
    assert fleet.sweep() == 0 and (keys / "k0.pem").exists()
    # a restart whose complete write reloads and passes: the grace starts then
    clock.t += 1
    fine, _ = setup(tmp_path, key_grace=5)
    fleet = SignerFleet([fine], tmp_path / "lock", now=clock)
    assert all(r.ok for r in fleet.apply(lambda: [*first[1:], new]))
    assert fleet.sweep() == 0 and (keys / "k0.pem").exists()
    clock.t += 6
    assert fleet.sweep() == 1 and not (keys / "k0.pem").exists()


def test_the_installer_holds_and_names_what_a_complete_bundle_drops(tmp_path: Path) -> None:
    d = tmp_path / "t"
    keys = {"keys/k1.pem": spec(b"one"), "keys/k2.pem": spec(b"two")}
    apply_bundle(d, {"version": 1, "keys": keys, "tables": {"T": spec(b"k1 k2")}})
    held = apply_bundle(
        d,
        {"version": 3, "hold": True, "keys": {"keys/k2.pem": spec(b"two")}, "tables": {}},
    )
    assert held == {"written": 0, "unchanged": 1, "removed": 0, "held": ["keys/k1.pem"]}
    assert (d / "keys/k1.pem").read_bytes() == b"one"
    wiped = apply_bundle(d, {"version": 2, "remove": ["keys/k1.pem"], "tables": {}})
    assert wiped["removed"] == 1 and not (d / "keys/k1.pem").exists()


def test_key_grace_setting(tmp_path: Path) -> None:
    block = '[[targets]]\nname = "x"\nformat = "json"\ndirectory = "d"\n'
    (default,) = targets(tmp_path, block)
    assert default.key_grace == 300
    (none,) = targets(tmp_path, block + "key_grace = 0\n")
    assert none.key_grace == 0
    with pytest.raises(ConfigError, match="key_grace: a number of seconds"):
        targets(tmp_path, block + "key_grace = -1\n")
