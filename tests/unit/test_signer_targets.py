"""Signer targets without a real signer: the [[targets]] config, the installer's rules
(keys before tables, atomic, stale keys wiped, nothing outside its directory), and the
fleet's per-target outcomes."""

from __future__ import annotations

import base64
import json
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from rotator.adapters.signers.fleet import SignerFleet
from rotator.adapters.signers.installer import InstallError, apply_bundle
from rotator.adapters.signers.probing.prober import Prober, probe_sender
from rotator.adapters.signers.target import SignerTarget, key_reader
from rotator.config.targets import ProbeConfig, TargetConfig, parse_targets
from rotator.domain.errors import ConfigError
from rotator.ports import SigningEntry

INSTALLER = Path(__file__).resolve().parents[2] / "rotator/adapters/signers/installer"


def targets(tmp_path: Path, text: str) -> tuple[TargetConfig, ...]:
    return parse_targets(tomllib.loads(text), tmp_path / "rotator.toml", tmp_path)


# --- config -----------------------------------------------------------------------------------


def test_targets_parse_with_their_defaults(tmp_path: Path) -> None:
    (od, rs) = targets(
        tmp_path,
        """
[[targets]]
name = "mx1-opendkim"
format = "opendkim"
directory = "od"
algorithms = ["ed25519"]
deliver = "ssh -T opendkim@mx1 python3 /usr/local/lib/rotator-install.py /srv/od"
reload = ["ssh", "root@mx1", "systemctl", "reload", "opendkim"]
probe = { kind = "milter", address = "inet:8891@127.0.0.1" }

[[targets]]
name = "rspamd"
format = "rspamd"
directory = "/var/lib/rotator-targets/rspamd"
key_group = "_rspamd"
probe = { kind = "rspamd", url = "http://127.0.0.1:11333", timeout = 3 }
""",
    )
    assert od.directory == tmp_path / "od" and od.algorithms == ("ed25519",)
    assert od.deliver[:2] == ("ssh", "-T") and not od.local
    assert (od.key_mode, od.table_mode, od.probe.kind) == (0o640, 0o640, "milter")
    assert rs.local and rs.algorithms == ("rsa", "ed25519") and rs.probe.timeout == 3


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ('name = "x"\nformat = "sendmail"\ndirectory = "d"', "format 'sendmail'"),
        ('name = "X!"\nformat = "json"\ndirectory = "d"', "lower-case letters"),
        ('name = "x"\nformat = "opendkim"\ndirectory = "d"', "one algorithm"),
        ('name = "x"\nformat = "json"\ndirectory = "d"\nkey_mode = "0644"', "lets others read"),
        (
            'name = "x"\nformat = "json"\ndirectory = "d"\nprobe = { kind = "milter" }',
            "needs address",
        ),
        ('name = "x"\nformat = "json"\ndirectory = "d"\nreload_cmd = "x"', "unknown setting"),
        ('name = "x"\nformat = "json"', "directory: missing"),
    ],
)
def test_bad_targets_are_one_line(tmp_path: Path, block: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        targets(tmp_path, f"[[targets]]\n{block}\n")
    assert "\n" not in str(info.value)


def test_two_targets_of_one_name_are_refused(tmp_path: Path) -> None:
    block = '[[targets]]\nname = "a"\nformat = "json"\ndirectory = "d"\n'
    with pytest.raises(ConfigError, match="unique"):
        targets(tmp_path, block * 2)


def test_an_older_config_has_one_opendkim_target(tmp_path: Path) -> None:
    (legacy,) = targets(tmp_path, '[signer]\nkey_table = "o/KT"\nsigning_table = "o/ST"\n')
    assert legacy.legacy_tables == (tmp_path / "o/KT", tmp_path / "o/ST")
    assert legacy.probe.kind == "none"


# --- the installer ------------------------------------------------------------------------------


def spec(data: bytes, mode: str = "0600") -> dict[str, str]:
    return {"data": base64.b64encode(data).decode(), "mode": mode}


def test_installer_writes_keys_then_tables_and_wipes_keys_that_left(tmp_path: Path) -> None:
    d = tmp_path / "t"
    first = {
        "version": 1,
        "keys": {"keys/k1.pem": spec(b"one"), "keys/k2.pem": spec(b"two")},
        "tables": {"KeyTable": spec(b"k1 k2", "0644")},
    }
    assert apply_bundle(d, first) == {"written": 3, "unchanged": 0, "removed": 0}
    assert stat.S_IMODE((d / "keys/k1.pem").stat().st_mode) == 0o600
    # the file's inode, held open: what the wipe wrote into it is read here afterwards
    witness = (d / "keys/k1.pem").open("rb")
    second = {
        "version": 1,
        "keys": {"keys/k2.pem": spec(b"two")},
        "tables": {"KeyTable": spec(b"k2", "0644")},
    }
    assert apply_bundle(d, second) == {"written": 1, "unchanged": 1, "removed": 1}
    assert not (d / "keys/k1.pem").exists()
    with witness:
        assert witness.read() == b"\0\0\0"  # the copy that left was zeroed, not just unlinked
    assert (d / "KeyTable").read_bytes() == b"k2"
    assert not list(d.rglob("*.tmp"))


@pytest.mark.parametrize(
    ("bundle", "message"),
    [
        ({"version": 4}, "version 4"),
        ({"version": 2, "hold": True}, "bundle hold"),
        ({"version": 3, "hold": True, "remove": []}, "bundle hold"),
        ({"version": 1, "remove": ["keys/a.pem"]}, "bundle remove"),
        ({"version": 2, "remove": ["KeyTable"]}, "not a file in keys/"),
        ({"version": 1, "keys": {"../k.pem": spec(b"x")}}, "must stay inside"),
        ({"version": 1, "keys": {"/etc/k.pem": spec(b"x")}}, "must stay inside"),
        ({"version": 1, "keys": {"keys/k.pem": spec(b"x", "0604")}}, "open to others"),
        ({"version": 1, "tables": {"KT": {"data": "!!", "mode": "0600"}}}, "table 'KT'"),
    ],
)
def test_installer_refusals(tmp_path: Path, bundle: dict[str, Any], message: str) -> None:
    with pytest.raises(InstallError, match=message):
        apply_bundle(tmp_path / "t", bundle)
    assert not (tmp_path / "k.pem").exists()


def test_installer_runs_on_its_own(tmp_path: Path) -> None:
    # the same file, copied to a signer host, with only the standard library
    bundle = {"version": 1, "tables": {"SigningTable": spec(b"*@a.example k1", "0640")}}
    proc = subprocess.run(
        [sys.executable, "-I", str(INSTALLER), str(tmp_path / "t")],
        input=json.dumps(bundle).encode(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"written": 1, "unchanged": 0, "removed": 0}
    source = "".join(p.read_text() for p in INSTALLER.glob("*.py"))
    assert "from rotator" not in source and "import rotator" not in source


# --- the fleet ------------------------------------------------------------------------------


def entry(tmp_path: Path, key_id: str = "k1", algorithm: str = "rsa") -> SigningEntry:
    path = tmp_path / "master" / f"{key_id}.pem"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\n")
    return SigningEntry(key_id, "a.example", "s1", str(path), "*@a.example", algorithm)


def target(tmp_path: Path, name: str, **kw: Any) -> SignerTarget:
    cfg = TargetConfig(name=name, format="json", directory=tmp_path / name, **kw)
    return SignerTarget(cfg, key_reader(lambda k: tmp_path / "master" / f"{k}.pem"),
                        Prober(cfg.probe, lambda zone, name: []))  # fmt: skip


def test_one_failing_target_fails_alone(tmp_path: Path) -> None:
    good = target(tmp_path, "good")
    bad = target(tmp_path, "bad", reload=("sh", "-c", "echo boom >&2; exit 3"))
    fleet = SignerFleet([good, bad], tmp_path / "lock")
    e = entry(tmp_path)
    results = {r.target: r for r in fleet.apply(lambda: [e], check=[e])}
    assert results["good"].ok and not results["good"].proven
    assert results["good"].detail == "written and reloaded; probe off: not proven"
    assert not results["bad"].ok and "exited 3: boom" in results["bad"].detail
    assert (tmp_path / "good" / "keys" / "k1.pem").exists()


def test_a_target_gets_only_its_algorithms(tmp_path: Path) -> None:
    ed_only = target(tmp_path, "ed", algorithms=("ed25519",))
    fleet = SignerFleet([ed_only], tmp_path / "lock")
    fleet.apply(lambda: [entry(tmp_path, "rsa1", "rsa"), entry(tmp_path, "ed1", "ed25519")])
    assert sorted(p.name for p in (tmp_path / "ed" / "keys").iterdir()) == ["ed1.pem"]


def test_an_unreachable_probe_fails_the_target(tmp_path: Path) -> None:
    probe = ProbeConfig(kind="milter", address="inet:1@127.0.0.1", timeout=0.5)
    t = target(tmp_path, "mx", probe=probe)
    (result,) = SignerFleet([t], tmp_path / "lock").apply(
        lambda: [entry(tmp_path)], check=[entry(tmp_path)]
    )
    assert not result.ok and "probe of s=s1 d=a.example" in result.detail


def test_probe_senders() -> None:
    assert probe_sender("*@acme.example") == "rotator-probe@acme.example"
    assert probe_sender("*@*.acme.example") == "rotator-probe@rotator-probe.acme.example"


def test_a_deliver_command_must_be_confirmed_by_the_installer(tmp_path: Path) -> None:
    # a pipe such as socat exits 0 whatever happened at the other end
    silent = target(tmp_path, "remote", deliver=("sh", "-c", "cat >/dev/null; exit 0"))
    (result,) = SignerFleet([silent], tmp_path / "lock").apply(lambda: [entry(tmp_path)])
    assert not result.ok and "the installer did not confirm the files" in result.detail
    real = (sys.executable, "-I", str(INSTALLER), str(tmp_path / "remote-dir"))
    installed = target(tmp_path, "remote2", deliver=real)
    (result,) = SignerFleet([installed], tmp_path / "lock").apply(lambda: [entry(tmp_path)])
    assert result.ok, result.detail
    assert (tmp_path / "remote-dir" / "keys" / "k1.pem").exists()


def test_a_target_may_not_own_rotators_key_dir(tmp_path: Path) -> None:
    from rotator.config.settings import check_target_dirs

    (t,) = targets(tmp_path, '[[targets]]\nname = "x"\nformat = "json"\ndirectory = "."\n')
    with pytest.raises(ConfigError, match="holds rotator's key_dir"):
        check_target_dirs(tmp_path / "rotator.toml", (t,), tmp_path / "keys")
    check_target_dirs(tmp_path / "rotator.toml", (t,), tmp_path / "elsewhere" / "keys")


def test_the_older_layout_never_wipes_a_keys_directory(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "precious.pem").write_bytes(b"rotator's own key")
    legacy = TargetConfig(
        name="opendkim",
        format="opendkim",
        directory=tmp_path,
        legacy_tables=(tmp_path / "KeyTable", tmp_path / "SigningTable"),
        table_mode=0o644,
    )
    t = SignerTarget(
        legacy, key_reader(lambda k: keys / f"{k}.pem"), Prober(ProbeConfig(), lambda z, n: [])
    )
    (result,) = SignerFleet([t], tmp_path / "lock").apply(lambda: [])
    assert result.ok
    assert (keys / "precious.pem").read_bytes() == b"rotator's own key"


# --- writing only what changed ------------------------------------------------------------


def numbered(tmp_path: Path, n: int) -> SigningEntry:
    e = entry(tmp_path, f"k{n}")
    return SigningEntry(e.key_id, f"d{n}.example", "s1", e.key_path, f"*@d{n}.example")


def change(added: list[SigningEntry], removed: list[SigningEntry], now: list[SigningEntry]) -> Any:
    from rotator.ports import SignerChange

    return SignerChange(tuple(added), tuple(removed), lambda: now)


@pytest.mark.parametrize("remote", [False, True])
def test_a_change_writes_the_new_key_wipes_the_old_and_leaves_the_rest(
    tmp_path: Path, remote: bool
) -> None:
    kw: dict[str, Any] = {}
    out = tmp_path / "t"
    if remote:  # the same through the installer run as a command (bundle version 2)
        kw["deliver"] = (sys.executable, "-I", str(INSTALLER), str(tmp_path / "t-remote"))
        out = tmp_path / "t-remote"
    t = target(tmp_path, "t", key_grace=0, **kw)  # wiped as soon as the reload was probed
    fleet = SignerFleet([t], tmp_path / "lock")
    first = [numbered(tmp_path, i) for i in range(5)]
    (result,) = fleet.apply(lambda: first)
    assert result.ok, result.detail
    before = {p.name: p.stat().st_ino for p in (out / "keys").iterdir()}
    new = numbered(tmp_path, 9)
    now = [*first[1:], new]
    (result,) = fleet.change(change([new], [first[0]], now), check=[new])
    assert result.ok, result.detail
    after = {p.name: p.stat().st_ino for p in (out / "keys").iterdir()}
    assert sorted(after) == sorted(f"k{i}.pem" for i in (1, 2, 3, 4, 9))
    # the untouched keys are the very same files: nothing rewrote them
    assert all(after[n] == before[n] for n in before if n != "k0.pem")
    table = json.loads((out / "signing.json").read_text())
    assert sorted(s["pattern"] for s in table["senders"]) == sorted(e.signing_pattern for e in now)


def test_a_change_is_written_in_full_until_a_complete_write_landed(tmp_path: Path) -> None:
    stale = tmp_path / "t" / "keys" / "left-over.pem"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"a key nobody lists")
    # an installer that fails its first delivery (it never runs until `ok` exists)
    install = f"test -e {tmp_path}/ok && exec {sys.executable} -I {INSTALLER} {tmp_path}/t"
    flaky = target(tmp_path, "t", deliver=("sh", "-c", install), key_grace=0)
    fleet = SignerFleet([flaky], tmp_path / "lock")
    a, b = numbered(tmp_path, 1), numbered(tmp_path, 2)
    (result,) = fleet.change(change([a], [], [a]))
    assert not result.ok and stale.exists()
    # the delivery failed, so the next change is complete: it sweeps what nothing lists
    # (right after the reload: this target has no grace)
    (tmp_path / "ok").touch()
    (result,) = fleet.change(change([b], [], [a, b]))
    assert result.ok and not stale.exists()
    # once in step, a change touches only its own keys
    stale.write_bytes(b"again")
    c = numbered(tmp_path, 3)
    (result,) = fleet.change(change([c], [], [a, b, c]))
    assert result.ok and stale.exists()


def test_the_stamp_file(tmp_path: Path) -> None:
    fleet = SignerFleet([], tmp_path / "db.signer-lock")
    assert fleet.stamped() is None
    fleet.stamp(42)
    assert fleet.stamped() == 42 and (tmp_path / "db.signer-lock.stamp").read_text() == "42\n"
    fleet.stamp(None)
    assert fleet.stamped() is None  # a write under way: nobody knows what targets hold
    (tmp_path / "db.signer-lock.stamp").write_text("garbage")
    assert fleet.stamped() is None


def test_a_complete_write_reads_the_signing_set_once_and_only_for_targets(tmp_path: Path) -> None:
    reads: list[int] = []

    def everything() -> list[SigningEntry]:
        reads.append(1)
        return [entry(tmp_path)]

    # no target: a start-up over a million identities reads nothing for nobody
    assert SignerFleet([], tmp_path / "lock").apply(everything) == [] and reads == []
    fleet = SignerFleet([target(tmp_path, "a"), target(tmp_path, "b")], tmp_path / "lock")
    assert all(r.ok for r in fleet.apply(everything)) and reads == [1]
