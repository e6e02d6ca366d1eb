"""The signer end for real: rotator drives two targets of different formats at once, a
Debian OpenDKIM (milter, running as `opendkim`, its files installed by rotator's installer
running as `opendkim`) and a Debian rspamd (HTTP, workers as `_rspamd`, files written by
rotator with the `_rspamd` group), against a real BIND pair. Each key is active only once
both signers were seen signing with it, and messages they sign verify with dkimpy against
the test nameservers."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import customer_add

from .conftest import DOMAIN
from .rotatorenv import RotatorEnv
from .signer_fleet import INSTALLER, Fleet

pytestmark = pytest.mark.integration

ESP = "fbl.esp.test"


def events(env: RotatorEnv, *args: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in env.cli("log", "--json", *args).stdout.splitlines()]


@pytest.mark.timeout(240)
def test_a_rotation_through_two_real_signers(fleet: Fleet) -> None:
    env = fleet.env
    env.cli("domain", "add", DOMAIN, "--policy", "demo")
    env.start()
    first = env.wait_for("first key active", lambda: env.key_in_state(DOMAIN, "active"), 60)
    sender = f"alice@{DOMAIN}"
    for signed in (fleet.signed_by_opendkim(sender), fleet.signed_by_rspamd(sender)):
        assert fleet.signatures(signed) == [(DOMAIN, first.selector, True)]
    activated = next(e for e in events(env, "--key", first.key_id) if e["type"] == "KeyActivated")
    assert {(t["target"], t["ok"], t["proven"]) for t in activated["payload"]["targets"]} == {
        ("mx-opendkim", True, True),
        ("mx-rspamd", True, True),
    }
    # OpenDKIM got its own copy of the key, owned by its user, 0600
    od_key = fleet.root / "opendkim-files" / "keys" / f"{first.key_id}.pem"
    st = od_key.stat()
    assert (st.st_uid, oct(st.st_mode & 0o777)) == (_uid("opendkim"), "0o600")
    rs_key = fleet.root / "rspamd-files" / "keys" / f"{first.key_id}.pem"
    assert oct(rs_key.stat().st_mode & 0o777) == "0o640"

    env.cli("rotate", DOMAIN, "--reason", "two signers")
    second = env.wait_for(
        "second key active", lambda: env.key_in_state(DOMAIN, "active", {first.key_id}), 60
    )
    for signed in (fleet.signed_by_opendkim(sender), fleet.signed_by_rspamd(sender)):
        assert fleet.signatures(signed) == [(DOMAIN, second.selector, True)]
    env.wait_for("first key revoked", lambda: env.key_in_state(DOMAIN, "destroyed"), 60)
    assert not od_key.exists() and not rs_key.exists()  # left both signers before revocation
    assert env.stop() == 0


@pytest.mark.timeout(240)
def test_a_stopped_signer_blocks_the_activation(fleet: Fleet) -> None:
    env = fleet.env
    env.cli("domain", "add", DOMAIN, "--policy", "demo")
    env.start()
    first = env.wait_for("first key active", lambda: env.key_in_state(DOMAIN, "active"), 60)
    fleet.rspamd.stop()  # its probe cannot be answered
    env.cli("rotate", DOMAIN, "--reason", "rspamd is down")
    stuck = env.wait_for(
        "activation failing on mx-rspamd",
        lambda: next(
            (k for k in env.list_keys(DOMAIN) if k.state.value == "verified" and k.attempts >= 1),
            None,
        ),
        90,
    )
    assert "signer targets lagging: mx-rspamd" in (stuck.last_error or "")
    assert env.key_in_state(DOMAIN, "active").key_id == first.key_id  # still the old one
    assert env.key_in_state(DOMAIN, "draining") is None  # never revoked while it may sign
    assert "mx-rspamd" in env.cli("status").stdout
    fleet.restart_rspamd()
    env.wait_for(
        "second key active once rspamd is back",
        lambda: env.key_in_state(DOMAIN, "active", {first.key_id}),
        90,
    )
    assert env.stop() == 0


@pytest.mark.timeout(240)
def test_an_emergency_across_both_signers(fleet: Fleet) -> None:
    env = fleet.env
    env.cli("domain", "add", DOMAIN, "--policy", "demo")
    env.start()
    first = env.wait_for("first key active", lambda: env.key_in_state(DOMAIN, "active"), 60)
    out = env.cli(
        "rotate", "--emergency", DOMAIN, "--reason", "leak", "--wait", "90", timeout=120
    ).stdout
    assert "signer target mx-opendkim: keys removed" in out
    assert "signer target mx-rspamd: keys removed" in out
    sender = f"alice@{DOMAIN}"
    for signed in (fleet.signed_by_opendkim(sender), fleet.signed_by_rspamd(sender)):
        assert first.selector not in [s for _, s, _ in fleet.signatures(signed)]
    new = env.wait_for(
        "replacement active", lambda: env.key_in_state(DOMAIN, "active", {first.key_id}), 60
    )
    for signed in (fleet.signed_by_opendkim(sender), fleet.signed_by_rspamd(sender)):
        assert fleet.signatures(signed) == [(DOMAIN, new.selector, True)]
    assert env.stop() == 0


@pytest.mark.timeout(240)
def test_the_esp_feedback_loop_signature_from_both_signers(fleet: Fleet) -> None:
    env = fleet.env
    env.cli("esp", "add", f"fbl.{DOMAIN}", "--policy", "demo", "--zone", DOMAIN)
    env.cli(
        *customer_add(
            "Acme",
            "acme.example",
            "third-party",
            signing_domain=f"acme.{DOMAIN}",
            zone=DOMAIN,
            esp_signature=f"fbl.{DOMAIN}",
        )
    )
    env.start()
    for d in (f"fbl.{DOMAIN}", f"acme.{DOMAIN}"):
        env.wait_for(f"{d} active", lambda: env.key_in_state(d, "active"), 60)  # noqa: B023
    sender = "alice@acme.example"
    for signed in (fleet.signed_by_opendkim(sender), fleet.signed_by_rspamd(sender)):
        got = fleet.signatures(signed)
        assert [(d, ok) for d, _, ok in got] == [(f"acme.{DOMAIN}", True), (f"fbl.{DOMAIN}", True)]
    assert env.stop() == 0


def _uid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_uid


def test_the_installer_refuses_paths_outside_its_directory(tmp_path: Path) -> None:
    bundle = {
        "version": 1,
        "tables": {"../escape": {"data": base64.b64encode(b"x").decode(), "mode": "0600"}},
    }
    proc = subprocess.run(
        [sys.executable, str(INSTALLER), str(tmp_path / "t")],
        input=json.dumps(bundle).encode(),
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 1 and b"must stay inside the directory" in proc.stderr
    assert not (tmp_path / "escape").exists()


@pytest.mark.timeout(240)
def test_a_removed_domain_stops_signing_on_both_signers(fleet: Fleet) -> None:
    env = fleet.env
    shop = f"shop.{DOMAIN}"
    env.cli("domain", "add", DOMAIN, "--policy", "demo")
    env.cli("domain", "add", shop, "--policy", "demo", "--zone", DOMAIN)
    env.start()
    kept = env.wait_for("first key active", lambda: env.key_in_state(DOMAIN, "active"), 60)
    gone = env.wait_for("shop key active", lambda: env.key_in_state(shop, "active"), 60)
    out = env.cli("domain", "remove", shop, "--reason", "contract ended").stdout
    assert "signer target mx-opendkim: keys removed" in out
    assert "signer target mx-rspamd: keys removed" in out
    for sign in (fleet.signed_by_opendkim, fleet.signed_by_rspamd):
        assert fleet.signatures(sign(f"bob@{shop}")) == []  # at once: nothing signs it
        assert [d for d, _, ok in fleet.signatures(sign(f"alice@{DOMAIN}")) if ok] == [DOMAIN]
    env.wait_for("removed key destroyed", lambda: env.key_in_state(shop, "destroyed"), 60)
    assert env.answers(gone.record_name)["secondary"][2] == ["v=DKIM1; p="]
    for files in ("opendkim-files", "rspamd-files"):
        assert not (fleet.root / files / "keys" / f"{gone.key_id}.pem").exists()
    assert kept.domain == DOMAIN
    assert env.stop() == 0


@pytest.mark.timeout(240)
def test_a_policy_change_to_ed25519_reaches_the_signer_of_that_algorithm(fleet: Fleet) -> None:
    # the OpenDKIM target signs RSA only, rspamd both: after the move to Ed25519 only rspamd
    # signs the domain, with the new key, and the activation needed both targets in step
    env = fleet.env
    env.cli("domain", "add", DOMAIN, "--policy", "demo")
    env.start()
    first = env.wait_for("first key active", lambda: env.key_in_state(DOMAIN, "active"), 60)
    env.cli("domain", "set-policy", DOMAIN, "demo-ed25519", "--rotate-now", "--reason", "ed")
    new = env.wait_for(
        "ed25519 key active", lambda: env.key_in_state(DOMAIN, "active", {first.key_id}), 60
    )
    assert new.algorithm == "ed25519"
    sender = f"alice@{DOMAIN}"
    assert fleet.signatures(fleet.signed_by_rspamd(sender)) == [(DOMAIN, new.selector, True)]
    assert fleet.signatures(fleet.signed_by_opendkim(sender)) == []
    assert env.stop() == 0


@pytest.mark.timeout(240)
def test_dual_algorithms_sign_side_by_side(fleet: Fleet) -> None:
    # RSA and Ed25519 keys active together: rspamd (both algorithms) adds both signatures,
    # the RSA-only OpenDKIM the RSA one; each verifies against the nameservers
    env = fleet.env
    env.cli("domain", "add", DOMAIN, "--policy", "demo-dual")
    env.start()

    def active() -> dict[str, Any]:
        keys = {k.algorithm: k for k in env.list_keys(DOMAIN) if k.state.value == "active"}
        return keys if set(keys) == {"rsa", "ed25519"} else {}

    keys = env.wait_for("an RSA and an Ed25519 key active", active, 60)
    sender = f"alice@{DOMAIN}"
    both = fleet.signatures(fleet.signed_by_rspamd(sender))
    assert {s for _, s, ok in both if ok} >= {keys["rsa"].selector, keys["ed25519"].selector}
    assert fleet.signatures(fleet.signed_by_opendkim(sender)) == [
        (DOMAIN, keys["rsa"].selector, True)
    ]
    assert env.stop() == 0
