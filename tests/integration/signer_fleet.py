"""Two real signers that rotator drives as [[targets]]: a Debian OpenDKIM (milter, as
`opendkim`, its files installed by rotator's installer run as `opendkim`) and a Debian
rspamd (HTTP, workers as `_rspamd`, files written by rotator with the `_rspamd` group),
beside a real BIND pair. conftest.py makes the `fleet` fixture available to every test."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dkim
import pytest

from rotator.demo.localdns import BindPair
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

INSTALLER = Path(__file__).resolve().parents[2] / "rotator/adapters/signers/installer"


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


# the tests' key_grace: a departed key's file outlives the reload by this much
KEY_GRACE = 2


def write_targets(env: RotatorEnv, od: OpenDkim, od_dir: Path, rs: Rspamd, rs_dir: Path) -> None:
    deliver = [
        "setpriv", "--reuid=opendkim", "--regid=opendkim", "--init-groups",
        "/usr/bin/python3", str(od_dir.parent / "installer"), str(od_dir),
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
key_grace = {KEY_GRACE}

[[targets]]
name = "mx-rspamd"
format = "rspamd"
directory = "{rs_dir}"
key_group = "_rspamd"
reload = {json.dumps(reload_command(rs_dir.parent, "rspamd", "HUP"))}
probe = {{ kind = "rspamd", url = "{rs.url}", timeout = 20 }}
key_grace = {KEY_GRACE}
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
        # the installer, copied alone as to a signer host, readable by opendkim
        shutil.copytree(INSTALLER, root / "installer", ignore=shutil.ignore_patterns("__pycache__"))
        os.chmod(root / "installer", 0o755)
        for f in (root / "installer").iterdir():
            os.chmod(f, 0o644)
        # OpenDKIM's directory is its own: the installer writes there as opendkim, so the
        # keys end up 0600 opendkim:opendkim, as its safe-key checks want
        od_dir = make_dir(root / "opendkim-files", mode=0o750, owner="opendkim", group="opendkim")
        empty = {"data": base64.b64encode(b"").decode(), "mode": "0600"}
        bundle = {"version": 1, "tables": {"KeyTable": empty, "SigningTable": empty}}
        subprocess.run(
            ["setpriv", "--reuid=opendkim", "--regid=opendkim", "--init-groups",
             "/usr/bin/python3", str(root / "installer"), str(od_dir)],
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
