"""The signer end for real: rotator drives two targets of different formats at once, a
Debian OpenDKIM (milter, running as `opendkim`, its files installed by rotator's installer
running as `opendkim`) and a Debian rspamd (HTTP, workers as `_rspamd`, files written by
rotator with the `_rspamd` group), against a real BIND pair. Each key is active only once
both signers were seen signing with it, and messages they sign verify with dkimpy against
the test nameservers."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dkim
import pytest

from rotator.demo.localdns import BindPair
from tests.support.cli import customer_add
from tests.support.signers import (
    OpenDkim,
    Rspamd,
    make_dir,
    opendkim_skip_reason,
    private_root,
    remove_private_root,
    rspamd_skip_reason,
)

from .conftest import DOMAIN, POLICIES
from .rotatorenv import RotatorEnv, dkim_dnsfunc

pytestmark = pytest.mark.integration

INSTALLER = Path(__file__).resolve().parents[2] / "rotator/adapters/signers/install.py"
ESP = "fbl.esp.test"


@dataclass
class Fleet:
    env: RotatorEnv
    bind: BindPair
    opendkim: OpenDkim
    rspamd: Rspamd
    root: Path

    def message(self, sender: str) -> bytes:
        domain = sender.partition("@")[2]
        return (
            f"From: {sender}\r\nTo: bob@example.org\r\nSubject: signed by a real signer\r\n"
            f"Message-ID: <{os.urandom(6).hex()}@{domain}>\r\n"
            "Date: Tue, 24 Nov 2026 12:00:00 +0000\r\n\r\nHello from the MTA.\r\n"
        ).encode()

    def restart_rspamd(self) -> None:
        self.rspamd.start()
        note_pid(self.root, "rspamd", self.rspamd.pid)

    def signed_by_opendkim(self, sender: str) -> bytes:
        return self.opendkim.sign(self.message(sender), sender)

    def signed_by_rspamd(self, sender: str) -> bytes:
        message = self.message(sender)
        headers = self.rspamd.sign(message, sender)
        return b"".join(f"DKIM-Signature: {h}\r\n".encode() for h in headers) + message

    def signatures(self, signed: bytes) -> list[tuple[str, str, bool]]:
        """(d, s, verifies against the test nameservers) for each signature."""
        ip, port = self.bind.server("secondary")
        verifier = dkim.DKIM(signed)
        out = []
        values = [v for k, v in verifier.headers if k.lower() == b"dkim-signature"]
        for i, value in enumerate(values):
            tags = dict(
                p.strip().split("=", 1)
                for p in value.decode().replace("\r\n", "").split(";")
                if "=" in p
            )
            ok = bool(verifier.verify(idx=i, dnsfunc=dkim_dnsfunc(ip, port)))
            out.append((tags["d"].strip(), tags["s"].strip(), ok))
        return sorted(out)


def note_pid(root: Path, name: str, pid: int) -> None:
    """The reload commands signal the pid in this file: a restarted signer gets a new one."""
    (root / f"{name}.pid").write_text(f"{pid}\n")


def reload_command(root: Path, name: str, sig: str) -> list[str]:
    return ["sh", "-c", f'kill -{sig} "$(cat {root / f"{name}.pid"})"']


def write_targets(env: RotatorEnv, od: OpenDkim, od_dir: Path, rs: Rspamd, rs_dir: Path) -> None:
    deliver = [
        "setpriv", "--reuid=opendkim", "--regid=opendkim", "--init-groups",
        "/usr/bin/python3", str(od_dir.parent / "install.py"), str(od_dir),
    ]  # fmt: skip
    text = env.config.read_text()
    text = text[: text.index("[signer]")]
    text += f"""
[[targets]]
name = "mx-opendkim"
format = "opendkim"
directory = "{od_dir}"
algorithms = ["rsa"]
deliver = {json.dumps(deliver)}
key_mode = "0600"
table_mode = "0600"
reload = {json.dumps(reload_command(od_dir.parent, "opendkim", "USR1"))}
probe = {{ kind = "milter", address = "{od.address}", timeout = 10 }}

[[targets]]
name = "mx-rspamd"
format = "rspamd"
directory = "{rs_dir}"
key_group = "_rspamd"
reload = {json.dumps(reload_command(rs_dir.parent, "rspamd", "HUP"))}
probe = {{ kind = "rspamd", url = "{rs.url}", timeout = 20 }}
"""
    env.config.write_text(text)
    env.config.chmod(0o600)


@pytest.fixture
def fleet(tmp_path: Path, bind_factory: Callable[..., BindPair]) -> Iterator[Fleet]:
    for reason in (opendkim_skip_reason(), rspamd_skip_reason()):
        if reason:
            pytest.skip(reason)
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) runs the installer as opendkim")
    bind = bind_factory(tmp_path / "bind", zones=(DOMAIN,))
    root = private_root()
    started: list[OpenDkim | Rspamd] = []
    try:
        shutil.copy(INSTALLER, root / "install.py")
        os.chmod(root / "install.py", 0o755)
        # OpenDKIM's directory is its own: the installer writes there as opendkim, so the
        # keys end up 0600 opendkim:opendkim, as its safe-key checks want
        od_dir = make_dir(root / "opendkim-files", mode=0o750, owner="opendkim", group="opendkim")
        empty = {"data": base64.b64encode(b"").decode(), "mode": "0600"}
        bundle = {"version": 1, "tables": {"KeyTable": empty, "SigningTable": empty}}
        subprocess.run(
            ["setpriv", "--reuid=opendkim", "--regid=opendkim", "--init-groups",
             "/usr/bin/python3", str(root / "install.py"), str(od_dir)],
            input=json.dumps(bundle).encode(), check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        od = OpenDkim(root, od_dir / "KeyTable", od_dir / "SigningTable", algorithm="rsa")
        started.append(od.start())
        note_pid(root, "opendkim", od.pid)
        # rspamd checks no ownership: a setgid _rspamd directory rotator writes itself
        rs_dir = make_dir(root / "rspamd-files", mode=0o2750, owner="root", group="_rspamd")
        (rs_dir / "dkim_signing.conf").write_text("")
        os.chmod(rs_dir / "dkim_signing.conf", 0o640)
        rs = Rspamd(root, rs_dir / "dkim_signing.conf")
        started.append(rs.start())
        note_pid(root, "rspamd", rs.pid)
        env = RotatorEnv(tmp_path, bind, POLICIES)
        write_targets(env, od, od_dir, rs, rs_dir)
        yield Fleet(env, bind, od, rs, root)
        env.close()
    finally:
        for signer in reversed(started):
            signer.stop()
        remove_private_root(root)


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
