"""A sender a signer format cannot sign exactly (KumoMTA's dkim_sign helper: one own
signature with d= the sender, the same ESP signatures on every sender) is refused at
onboarding, and one already recorded is left out of that target alone: the others are
still written, and an emergency still takes a compromised key out."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from rotator.adapters.signers import kumomta
from rotator.adapters.signers.fleet import SignerFleet
from rotator.adapters.signers.probes import Prober
from rotator.adapters.signers.target import SignerTarget, key_reader
from rotator.config_targets import TargetConfig
from rotator.ports import SignerChange, SigningEntry

ESP = "fbl.esp.test"


def entry(key_id: str, d: str, pattern: str, esp: bool = False) -> SigningEntry:
    return SigningEntry(key_id, d, "s1", "/nowhere", pattern, "rsa", esp)


# --- the format ------------------------------------------------------------------------------


def test_kumomta_names_the_senders_it_cannot_sign_and_no_other() -> None:
    good = [entry(f"k{n}", f"d{n}.example", f"*@d{n}.example") for n in range(3)]
    fbl = [entry("fbl", ESP, e.signing_pattern, esp=True) for e in good]
    tp = entry("tp", "acme.esp.test", "*@acme.example")  # third-party d=
    bare = entry("bare", "e.example", "*@e.example")  # no ESP signature, unlike the rest
    assert kumomta.refused([*good, *fbl, tp, bare]) == {
        "*@acme.example": "d=acme.esp.test is not the sender domain acme.example",
        "*@e.example": (
            "ESP signatures none where the other senders carry s1/fbl.esp.test "
            "(additional_signatures go on every message)"
        ),
    }
    assert kumomta.refused([*good, *fbl]) == {}
    # beside what is signed now: one new sender is compared with the senders there
    assert list(kumomta.refused([bare], beside=[good[0], fbl[0]])) == ["*@e.example"]
    assert kumomta.refused([good[1], fbl[1]], beside=[good[0], fbl[0]]) == {}


# --- the target ------------------------------------------------------------------------------


def kumo_target(tmp_path: Path, read: Any) -> SignerTarget:
    cfg = TargetConfig(name="kumo", format="kumomta", directory=tmp_path / "kumo", key_grace=0)
    return SignerTarget(cfg, key_reader(read), Prober(cfg.probe, lambda zone, name: []))


def data(tmp_path: Path) -> dict[str, Any]:
    return tomllib.loads((tmp_path / "kumo" / kumomta.DATA).read_text())


def test_a_sender_the_format_cannot_sign_is_left_out_not_the_others(tmp_path: Path) -> None:
    master = tmp_path / "master"
    master.mkdir()
    for k in ("k1", "k2", "tp"):
        (master / f"{k}.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\n")
    fleet = SignerFleet([kumo_target(tmp_path, lambda k: master / f"{k}.pem")], tmp_path / "l")
    k1, k2 = entry("k1", "a.example", "*@a.example"), entry("k2", "b.example", "*@b.example")
    tp = entry("tp", "c.esp.test", "*@c.example")
    (result,) = fleet.apply(lambda: [k1, k2, tp], check=[k1, tp])
    assert result.ok, result.detail
    assert "not signed here: *@c.example (d=c.esp.test is not the sender domain" in result.detail
    assert sorted(data(tmp_path)["domain"]) == ["a.example", "b.example"]
    keys = tmp_path / "kumo" / "keys"
    assert sorted(p.name for p in keys.iterdir()) == ["k1.pem", "k2.pem"]
    # a compromise: the removal alone, whatever the format thinks of another sender
    (result,) = fleet.withdraw([k1], lambda: [k2, tp], wipe=True)
    assert result.ok, result.detail
    assert sorted(data(tmp_path)["domain"]) == ["b.example"]
    assert sorted(p.name for p in keys.iterdir()) == ["k2.pem"]
    # and a change
    k3 = entry("k3", "a.example", "*@a.example")
    (master / "k3.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\n")
    fleet.trust()
    (result,) = fleet.change(SignerChange((k3,), (), lambda: [k2, k3, tp]))
    assert result.ok, result.detail
    assert sorted(data(tmp_path)["domain"]) == ["a.example", "b.example"]
