"""The rendered rspamd and Exim configurations, signing for real (rspamd 3.4, Exim 4.96).

Keys are made here with `cryptography`; every signature is checked with dkimpy through a
dnsfunc stub serving the public keys (no nameserver). One fixed set of entries: RSA + Ed25519
own keys, a third-party d=, the ESP's feedback-loop key signing for two senders, a subdomain
pattern. Each daemon is stopped by the pid this test started; Exim's delivery processes (which
carry this test's unique -C path) are looked up by that path and stopped by pid too.

Run: .venv/bin/python -m pytest tests/integration/test_signer_formats_real.py -q
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import smtplib
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from rotator.adapters.signers import exim, rspamd
from rotator.adapters.signers.base import Format, TargetFiles
from rotator.adapters.signers.base import render as render_files
from rotator.ports import SigningEntry
from tests.support.signers import (
    Rspamd,
    dkim_record,
    free_port,
    install_file,
    make_dir,
    private_root,
    remove_private_root,
    rspamd_skip_reason,
)

pytestmark = pytest.mark.integration

EXIM_BIN = "/usr/sbin/exim4"
Key = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
Sig = tuple[str, str, str]  # (a=, d=, s=)


def entry(
    kid: str, d: str, s: str, pattern: str, alg: str = "rsa", esp: bool = False
) -> SigningEntry:
    return SigningEntry(kid, d, s, "/nonexistent", pattern, alg, esp)


ENTRIES = [
    entry("acme-rsa", "acme.com", "r2026", "*@acme.com"),
    entry("acme-ed", "acme.com", "e2026", "*@acme.com", "ed25519"),
    entry("esp-fbl", "fbl.esp.example", "fbl1", "*@acme.com", esp=True),
    entry("beta-tp", "beta.esp-dkim.example", "t1", "*@beta.example"),
    entry("esp-fbl", "fbl.esp.example", "fbl1", "*@beta.example", esp=True),
    entry("acme-sub", "acme.com", "sub1", "*@*.acme.com"),
]
RSA, ED = "rsa-sha256", "ed25519-sha256"
EXPECTED: dict[str, list[Sig]] = {
    "acme.com": [
        (ED, "acme.com", "e2026"),
        (RSA, "acme.com", "r2026"),
        (RSA, "fbl.esp.example", "fbl1"),
    ],
    "beta.example": [(RSA, "beta.esp-dkim.example", "t1"), (RSA, "fbl.esp.example", "fbl1")],
    "news.acme.com": [(RSA, "acme.com", "sub1")],
    "a.b.acme.com": [(RSA, "acme.com", "sub1")],
    "acme.com.evil.example": [],
    "other.org": [],
}


class Keys:
    """Real keys for the entries (plus a rotated one), and the dkimpy DNS stub for them."""

    def __init__(self) -> None:
        self.keys: dict[str, Key] = {}
        self.records: dict[str, bytes] = {}

    def add(self, e: SigningEntry) -> None:
        if e.key_id not in self.keys:
            gen = ed25519.Ed25519PrivateKey.generate
            self.keys[e.key_id] = (
                gen() if e.algorithm == "ed25519" else rsa.generate_private_key(65537, 2048)
            )
        key = self.keys[e.key_id]
        record = dkim_record(key)
        self.records[f"{e.selector}._domainkey.{e.domain}"] = record

    def pem(self, e: SigningEntry) -> bytes:
        self.add(e)
        return self.keys[e.key_id].private_bytes(
            ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()
        )

    def dnsfunc(self, name: bytes | str, timeout: int = 5) -> bytes | None:
        text = name.decode() if isinstance(name, bytes) else name
        return self.records.get(text.rstrip(".").lower())


@pytest.fixture(scope="module")
def keys() -> Keys:
    k = Keys()
    for e in ENTRIES:
        k.add(e)
    return k


@pytest.fixture
def root() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("real signers need root (to switch to their own users)")
    path = private_root()
    try:
        yield path
    finally:
        remove_private_root(path)


def message(sender_domain: str, tag: str = "1") -> bytes:
    return (
        f"From: Alice <alice@{sender_domain}>\r\nTo: bob@example.net\r\n"
        f"Subject: probe {tag}\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n"
        f"Message-ID: <{tag}.{os.getpid()}@{sender_domain}>\r\n\r\nHello.\r\n"
    ).encode()


def signatures(msg: bytes) -> list[Sig]:
    head = msg.split(b"\r\n\r\n", 1)[0].decode()
    values = re.findall(r"(?im)^DKIM-Signature:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head)
    tags = [
        dict(t.split("=", 1) for t in re.sub(r"\s+", "", v).split(";") if "=" in t) for v in values
    ]
    return [(t["a"], t["d"], t["s"]) for t in tags]


def verified(msg: bytes, k: Keys) -> list[Sig]:
    """The signatures on `msg`, each of which must verify."""
    found = signatures(msg)
    checker = dkim.DKIM(msg)
    for i, sig in enumerate(found):
        assert checker.verify(idx=i, dnsfunc=k.dnsfunc), f"{sig} does not verify"
    return found


def write_target(
    target: Path, fmt: Format, entries: Sequence[SigningEntry], k: Keys, group: str
) -> TargetFiles:
    """Keys first (0640 root:<group> in 0750 root:<group>), then the tables, as rotator does."""
    key_dir = make_dir(target / "keys", mode=0o750, group=group)
    files = render_files(fmt, entries, k.pem, str(key_dir))
    for name, data in files.keys.items():
        install_file(target / name, data, mode=0o640, group=group)
    for name, data in files.tables.items():
        install_file(target / name, data, mode=0o644)
    return files


# ------------------------------------------------------------------ rspamd


def need_rspamd() -> None:
    reason = rspamd_skip_reason()
    if reason:
        pytest.skip(reason)


def rspamd_unauthenticated(rs: Rspamd, msg: bytes) -> bytes:
    request = urllib.request.Request(
        f"{rs.url}/checkv2", data=msg, method="POST", headers={"IP": "192.0.2.7"}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        body: bytes = reply.read()
        return body


def test_rspamd_signs_exactly_the_entries(root: Path, keys: Keys) -> None:
    """sign_condition returns every signature of the sender: two own selectors, a third-party
    d=, the ESP's d=, subdomains; not outbound mail is left alone; a rewrite + SIGHUP swaps
    the selector."""
    need_rspamd()
    target = make_dir(root / "target")
    write_target(target, rspamd.RspamdFormat(), ENTRIES, keys, "_rspamd")
    rs = Rspamd(root, target / rspamd.CONF)
    with rs:
        for domain, want in EXPECTED.items():
            msg = message(domain)
            got = verified(b"".join(_headers(rs.sign(msg, f"alice@{domain}"))) + msg, keys)
            assert got == want, domain
        inbound = rspamd_unauthenticated(rs, message("acme.com"))
        assert b'"action"' in inbound and b"dkim-signature" not in inbound

        rotated = [e for e in ENTRIES if e.key_id != "acme-rsa"]
        rotated.append(entry("acme-rsa-2", "acme.com", "r2027", "*@acme.com"))
        write_target(target, rspamd.RspamdFormat(), rotated, keys, "_rspamd")
        rs.reload()
        msg = message("acme.com", "2")
        got = verified(b"".join(_headers(rs.sign(msg, "alice@acme.com"))) + msg, keys)
    assert [s for _, _, s in got] == ["e2026", "r2027", "fbl1"]
    assert rs.proc is not None and rs.proc.poll() is not None
    assert not rs.alive_workers()


def _headers(values: list[str]) -> list[bytes]:
    return [b"DKIM-Signature: " + re.sub(r"\r?\n", "\r\n", v).encode() + b"\r\n" for v in values]


def test_rspamd_ignores_a_domain_key_in_a_selector_entry(root: Path, keys: Keys) -> None:
    """Measured: why the format does not use plain `domain {}` blocks. rspamd 3.4 signs a
    selector entry with d=<sender domain> whatever `domain` it holds, so the ESP's key makes
    a d=acme.com signature that cannot verify."""
    need_rspamd()
    target = make_dir(root / "target")
    esp = ENTRIES[2]
    write_target(target, rspamd.RspamdFormat(), [esp], keys, "_rspamd")  # for the key file
    install_file(
        target / "stock.conf",
        'domain { "acme.com" { selectors [ { domain = "fbl.esp.example"; selector = "fbl1"; '
        f'path = "{target}/keys/esp-fbl.pem"; }} ] }} }}\n',
    )
    with Rspamd(root, target / "stock.conf") as rs:
        values = rs.sign(message("acme.com"), "alice@acme.com")
    msg = b"".join(_headers(values)) + message("acme.com")
    assert signatures(msg) == [(RSA, "acme.com", "fbl1")]
    assert not dkim.DKIM(msg).verify(dnsfunc=keys.dnsfunc)


# ------------------------------------------------------------------ Exim


class Sink:
    """A loopback SMTP server keeping every message it is given."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.messages: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as f:
            conn.sendall(b"220 sink\r\n")
            for line in f:
                verb = line[:4].upper()
                if verb == b"DATA":
                    conn.sendall(b"354 go\r\n")
                    lines = iter(f.readline, b".\r\n")
                    data = b"".join(x[1:] if x.startswith(b".") else x for x in lines)
                    self.messages.append(data)
                conn.sendall(b"221 bye\r\n" if verb == b"QUIT" else b"250 ok\r\n")
                if verb == b"QUIT":
                    return

    def wait(self, count: int, timeout: float = 15.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.messages)

    def close(self) -> None:
        self.sock.close()


class Exim:
    """`exim -C <conf> -bdf -oX PORT` as root: Exim drops to Debian-exim (because of -C) and
    delivers everything to the sink through a transport with the module's DKIM lines."""

    def __init__(self, base: Path, target: Path, sink: Sink, strict: bool = True) -> None:
        self.dir = make_dir(base / "exim")
        for sub in ("spool", "log"):
            make_dir(self.dir / sub, mode=0o750, owner="Debian-exim", group="Debian-exim")
        self.conf = self.dir / "exim.conf"
        self.port = free_port()
        main = [
            "exim_user = Debian-exim",
            "exim_group = Debian-exim",
            f"spool_directory = {self.dir}/spool",
            f"log_file_path = {self.dir}/log/%slog",
            f"daemon_smtp_ports = {self.port}",
            "local_interfaces = <; 127.0.0.1",
            "primary_hostname = probe.local",
            "acl_smtp_rcpt = acl_check_rcpt",
            "host_lookup =",
            "tls_advertise_hosts =",
            "disable_ipv6 = true",
            "keep_environment =",
            f"ROTATOR_DKIM = {target}",
        ]
        transport = [
            "dkim_smtp:",
            "  driver = smtp",
            f"  port = {sink.port}",
            "  allow_localhost",
            "  hosts_avoid_tls = *",
            "  dkim_canon = relaxed",
            f"  dkim_strict = {'true' if strict else 'false'}",
        ]
        install_file(
            self.conf,
            "\n".join(main)
            + "\n"
            + exim.MAIN_OPTIONS
            + "begin acl\nacl_check_rcpt:\n  accept hosts = 127.0.0.1\n  deny\n"
            + "begin routers\nsink:\n  driver = manualroute\n  domains = *\n"
            + "  transport = dkim_smtp\n  route_list = * 127.0.0.1 byname\n  self = send\n"
            # Without a retry rule Exim treats a deferral as final and bounces at once.
            + "begin retry\n* * F,1h,15m\n"
            + "begin transports\n"
            + "\n".join(transport)
            + "\n"
            + exim.TRANSPORT_OPTIONS,
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Exim:
        self.proc = subprocess.Popen(
            [EXIM_BIN, "-C", str(self.conf), "-bdf", "-oX", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return self
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"exim did not start: {self.log()[-500:]}")
            time.sleep(0.05)

    def send(self, msg: bytes) -> None:
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as smtp:
            smtp.sendmail("bounce@esp.example", ["bob@example.net"], msg)

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "log" / "mainlog").read_text(errors="replace")
        return ""

    def wait_log(self, text: str, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _ours(self) -> list[int]:
        """Exim processes started with our -C path (the daemon and its deliveries)."""
        pids = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            with contextlib.suppress(OSError):
                if str(self.conf).encode() in cmdline.read_bytes().split(b"\0"):
                    pids.append(int(cmdline.parent.name))
        return pids

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while self._ours() and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in self._ours():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink()
    try:
        yield s
    finally:
        s.close()


def from_domain(msg: bytes) -> str:
    found = re.search(rb"From: Alice <alice@([^>]+)>", msg)
    assert found, msg[:500]
    return found[1].decode()


def need_exim() -> None:
    if not os.path.exists(EXIM_BIN):
        pytest.skip(f"{EXIM_BIN} is not installed (apt-get install exim4-daemon-light)")


def test_exim_signs_exactly_the_entries(root: Path, keys: Keys, sink: Sink) -> None:
    """The transport lines from exim.py sign RSA + Ed25519 side by side, the third-party and
    ESP d=, subdomains; a rewritten file counts from the next message, with no reload."""
    need_exim()
    target = make_dir(root / "target")
    write_target(target, exim.EximFormat(), ENTRIES, keys, "Debian-exim")
    with Exim(root, target, sink) as mta:
        assert mta.proc is not None and mta.proc.pid in mta._ours()
        for domain in EXPECTED:
            mta.send(message(domain))
        got = sink.wait(len(EXPECTED))
        rotated = [e for e in ENTRIES if e.key_id != "acme-rsa"]
        rotated.append(entry("acme-rsa-2", "acme.com", "r2027", "*@acme.com"))
        write_target(target, exim.EximFormat(), rotated, keys, "Debian-exim")
        mta.send(message("acme.com", "2"))
        after = sink.wait(len(EXPECTED) + 1)[-1]
    assert len(got) == len(EXPECTED), mta.log()[-2000:]
    by_from = {from_domain(m): m for m in got}
    for domain, want in EXPECTED.items():
        assert verified(by_from[domain], keys) == want, domain
    assert [s for _, _, s in verified(after, keys)] == ["e2026", "r2027", "fbl1"]
    assert not mta._ours()


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "not-strict"])
def test_exim_pair_without_a_key_is_skipped(
    root: Path, keys: Keys, sink: Sink, strict: bool
) -> None:
    """A (d, s) whose key expands to `false` is left out without error, dkim_strict or not;
    the other signatures are made."""
    need_exim()
    target = make_dir(root / "target")
    write_target(target, exim.EximFormat(), ENTRIES, keys, "Debian-exim")
    plan = (target / exim.SENDERS).read_text()
    install_file(target / exim.SENDERS, re.sub(r"\n  k\.e2026\._domainkey[^\n]*", "", plan))
    with Exim(root, target, sink, strict=strict) as mta:
        mta.send(message("acme.com"))
        got = sink.wait(1)
    assert len(got) == 1, mta.log()[-2000:]
    assert verified(got[0], keys) == EXPECTED["acme.com"][1:]
    assert not mta._ours()


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "not-strict"])
def test_exim_unreadable_key(root: Path, keys: Keys, sink: Sink, strict: bool) -> None:
    """One key Debian-exim cannot read: dkim_strict defers the message; without it the
    message leaves with no DKIM signature at all, not even the readable keys'."""
    need_exim()
    target = make_dir(root / "target")
    write_target(target, exim.EximFormat(), ENTRIES, keys, "Debian-exim")
    os.chmod(target / "keys" / "acme-ed.pem", 0o600)  # root only
    with Exim(root, target, sink, strict=strict) as mta:
        mta.send(message("acme.com"))
        if strict:
            assert mta.wait_log("dkim_strict"), mta.log()[-2000:]
            assert mta.wait_log(" == bob@example.net"), mta.log()[-2000:]
        got = sink.wait(0 if strict else 1, timeout=5 if strict else 15)
    log = mta.log()
    assert f"unable to open file for reading: {target}/keys/acme-ed.pem" in log
    if strict:
        assert got == [] and " ** " not in log  # held in the queue, not bounced
    else:
        assert len(got) == 1 and signatures(got[0]) == []
    assert not mta._ours()
