"""Self-tests of tests/support/signers.py against the real OpenDKIM and rspamd.

Keys are made here with `cryptography`; dkimpy verifies through a dnsfunc stub that serves the
matching TXT records, so no nameserver is involved. Every daemon is started through a context
manager and the `started` fixture checks at teardown that each pid is gone.

Run: .venv/bin/python -m pytest tests/integration/test_signer_harness.py --noconftest -q
"""

from __future__ import annotations

import base64
import os
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from rotator.adapters.signers.probing.milter import (
    MilterResult,
    milter_sign,
    parse_address,
    signed_message,
    split_message,
)
from rotator.adapters.signers.probing.rspamd import rspamd_sign
from rotator.domain.errors import SignerError
from tests.support.signers import (
    OpenDkim,
    Rspamd,
    dkim_record,
    free_port,
    install_file,
    make_dir,
    opendkim_skip_reason,
    private_root,
    remove_private_root,
    rspamd_skip_reason,
)

pytestmark = pytest.mark.integration

DOMAIN = "example.com"
SENDER = f"alice@{DOMAIN}"
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


# ------------------------------------------------------------------ keys, DNS stub, messages


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def pem(key: PrivateKey, fmt: ser.PrivateFormat = ser.PrivateFormat.PKCS8) -> bytes:
    return key.private_bytes(ser.Encoding.PEM, fmt, ser.NoEncryption())


def der_b64(key: PrivateKey, fmt: ser.PrivateFormat = ser.PrivateFormat.PKCS8) -> str:
    return base64.b64encode(key.private_bytes(ser.Encoding.DER, fmt, ser.NoEncryption())).decode()


def rspamd_ed25519(key: ed25519.Ed25519PrivateKey) -> bytes:
    """rspamd 3.4's Ed25519 key file: base64 of the 32-byte seed followed by the public key."""
    seed = key.private_bytes(ser.Encoding.Raw, ser.PrivateFormat.Raw, ser.NoEncryption())
    public = key.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    return base64.b64encode(seed + public) + b"\n"


class DnsStub:
    """dkimpy `dnsfunc`: answers TXT queries for the selectors a test published."""

    def __init__(self) -> None:
        self.records: dict[str, bytes] = {}

    def publish(self, selector: str, key: PrivateKey, domain: str = DOMAIN) -> None:
        record = dkim_record(key)
        self.records[f"{selector}._domainkey.{domain}"] = record

    def __call__(self, name: bytes | str, timeout: int = 5) -> bytes | None:
        text = name.decode() if isinstance(name, bytes) else name
        return self.records.get(text.rstrip(".").lower())


def message(tag: str = "1", body: bytes | None = None) -> bytes:
    # A folded header and 8-bit body bytes: the milter must pass both through unchanged.
    if body is None:
        body = b"Hello.\r\n\xe9t\xe9 \xff raw 8-bit bytes\r\n\r\n"
    return (
        f"From: Alice <{SENDER}>\r\n"
        "To: bob@example.net\r\n"
        f"Subject: probe {tag}\r\n"
        " folded continuation\r\n"
        "Date: Mon, 24 Nov 2025 10:00:00 +0000\r\n"
        f"Message-ID: <{tag}.{os.getpid()}@{DOMAIN}>\r\n"
        "\r\n"
    ).encode() + body


def signatures(msg: bytes) -> list[dict[str, str]]:
    """Tags (a, s, d) of each DKIM-Signature on top of `msg`, in order."""
    headers, _ = split_message(msg)
    found: list[dict[str, str]] = []
    for name, value in headers:
        if name.lower() == "dkim-signature":
            text = re.sub(r"\s+", "", value.decode())
            tags = dict(t.split("=", 1) for t in text.split(";") if "=" in t)
            found.append({k: tags[k] for k in ("a", "s", "d") if k in tags})
    return found


def verify_all(msg: bytes, dns: DnsStub) -> list[bool]:
    """Verify every signature (dkim.verify checks only the first one)."""
    count = len(signatures(msg))
    checker = dkim.DKIM(msg)
    return [bool(checker.verify(idx=i, dnsfunc=dns)) for i in range(count)]


def with_signatures(msg: bytes, values: list[str]) -> bytes:
    top = b"".join(
        b"DKIM-Signature: " + v.replace("\r\n", "\n").replace("\n", "\r\n").encode() + b"\r\n"
        for v in values
    )
    return top + msg


# ------------------------------------------------------------------ fixtures


@pytest.fixture
def root() -> Iterator[Path]:
    """Signer files live below a fresh 0755 root directory under /run (not /tmp)."""
    if os.geteuid() != 0:
        pytest.skip("signer harness needs root")
    path = private_root()
    try:
        yield path
    finally:
        remove_private_root(path)


@pytest.fixture
def started() -> Iterator[list[OpenDkim | Rspamd]]:
    """Register each signer here; at teardown every one is stopped and its pid must be gone."""
    signers: list[OpenDkim | Rspamd] = []
    yield signers
    for signer in signers:
        signer.stop()
    for signer in signers:
        if signer.proc is not None:
            assert signer.proc.poll() is not None, f"pid {signer.proc.pid} still running"
        if isinstance(signer, Rspamd):
            assert not signer.alive_workers(), f"rspamd workers left: {signer.alive_workers()}"


def need_opendkim() -> None:
    reason = opendkim_skip_reason()
    if reason:
        pytest.skip(reason)


def need_rspamd() -> None:
    reason = rspamd_skip_reason()
    if reason:
        pytest.skip(reason)


def logged(od: OpenDkim, text: str, lines: list[str] | None = None) -> bool:
    """Whether OpenDKIM logged `text`; True where its log cannot be captured, so only the
    signing behaviour is asserted there."""
    if not od.has_logs:
        return True
    return any(text in line for line in (od.log_lines() if lines is None else lines))


def opendkim_files(root: Path) -> tuple[Path, Path, Path]:
    """keys/ (0750 root:opendkim), tables/ (0755 root), and the two table paths."""
    keys = make_dir(root / "keys", mode=0o750, group="opendkim")
    tables = make_dir(root / "tables")
    return keys, tables / "KeyTable", tables / "SigningTable"


# ------------------------------------------------------------------ milter client alone


def test_milter_errors_are_signer_errors() -> None:
    port = free_port()  # nothing listens here
    with pytest.raises(SignerError, match="cannot connect"):
        milter_sign(f"inet:{port}@127.0.0.1", message(), sender=SENDER, recipients=["b@x.net"])
    with pytest.raises(SignerError, match="not inet:PORT@HOST"):
        milter_sign("nonsense", message(), sender=SENDER, recipients=["b@x.net"])

    # A peer that accepts and never answers: the deadline applies.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    thread.start()
    try:
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(SignerError, match="timed out"):
            milter_sign(address, message(), sender=SENDER, recipients=["b@x.net"], timeout=0.5)
    finally:
        thread.join(timeout=2)
        for conn in accepted:
            conn.close()
        listener.close()


def test_parse_address_forms() -> None:
    assert parse_address("inet:8891@127.0.0.1") == (socket.AF_INET, ("127.0.0.1", 8891))
    assert parse_address("inet6:8891@::1") == (socket.AF_INET6, ("::1", 8891))
    assert parse_address("127.0.0.1:8891") == (socket.AF_INET, ("127.0.0.1", 8891))
    assert parse_address("[::1]:8891") == (socket.AF_INET6, ("::1", 8891))
    assert parse_address("unix:/run/x.sock") == (socket.AF_UNIX, "/run/x.sock")
    assert parse_address("local:/run/x.sock") == (socket.AF_UNIX, "/run/x.sock")


def test_split_message_keeps_folding_and_raw_body() -> None:
    headers, body = split_message(b"A: 1\r\n 2\r\nB:x\r\n\r\n\xff\r\n")
    assert headers == [("A", b" 1\r\n 2"), ("B", b"x")]
    assert body == b"\xff\r\n"


def test_rspamd_client_errors_are_signer_errors() -> None:
    with pytest.raises(SignerError, match="rspamd"):
        rspamd_sign(f"http://127.0.0.1:{free_port()}/checkv2", message(), sender=SENDER)


# ------------------------------------------------------------------ (a) OpenDKIM, key file


def test_opendkim_signs_with_key_file(root: Path, started: list[OpenDkim | Rspamd]) -> None:
    need_opendkim()
    dns = DnsStub()
    key = rsa_key()
    dns.publish("sel1", key)
    keys, key_table, signing_table = opendkim_files(root)
    install_file(keys / "sel1.pem", pem(key), mode=0o600, owner="opendkim", group="opendkim")
    install_file(key_table, f"k1 {DOMAIN}:sel1:{keys / 'sel1.pem'}\n")
    install_file(signing_table, f"*@{DOMAIN} k1\n")

    od = OpenDkim(root, key_table, signing_table)
    started.append(od)
    with od:
        assert int(od.pid_path.read_text().split()[0]) == od.pid
        small = od.sign(message("a1"), SENDER)
        # > 64 KiB of 8-bit body: several body chunks, and the body hash proves the bytes.
        big_body = bytes(range(256)).replace(b"\n", b"").replace(b"\r", b"") * 1024 + b"\r\n"
        big = od.sign(message("a2", big_body), SENDER)
    assert signatures(small) == [{"a": "rsa-sha256", "s": "sel1", "d": DOMAIN}]
    assert verify_all(small, dns) == [True]
    assert verify_all(big, dns) == [True]
    assert logged(od, "DKIM-Signature field added (s=sel1")


# ------------------------------------------------------------------ (b) OpenDKIM, inline keys


@pytest.mark.parametrize(
    ("owner", "mode"),
    [("root", 0o640), ("nobody", 0o640)],
    ids=["root-opendkim-0640", "nobody-opendkim-0640"],
)
@pytest.mark.parametrize(
    "fmt", [ser.PrivateFormat.TraditionalOpenSSL, ser.PrivateFormat.PKCS8], ids=["pkcs1", "pkcs8"]
)
def test_opendkim_inline_der_key_signs_at_start_and_after_reload(
    root: Path, started: list[OpenDkim | Rspamd], owner: str, mode: int, fmt: ser.PrivateFormat
) -> None:
    """Inline base64 DER works, but only while the KeyTable line fits OpenDKIM's 1 KiB line
    buffer: RSA-1024 fits, RSA-2048 does not (see the next test)."""
    need_opendkim()
    dns = DnsStub()
    key = rsa_key(1024)
    dns.publish("sel1", key)
    dns.publish("sel2", key)
    _, key_table, signing_table = opendkim_files(root)
    install_file(signing_table, f"*@{DOMAIN} k1\n")
    install_file(
        key_table,
        f"k1 {DOMAIN}:sel1:{der_b64(key, fmt)}\n",
        mode=mode,
        owner=owner,
        group="opendkim",
    )

    od = OpenDkim(root, key_table, signing_table)
    started.append(od)
    with od:
        at_start = od.sign(message("b1"), SENDER)
        # Rewritten (same ownership) and reloaded: now read as the opendkim user.
        install_file(
            key_table,
            f"k1 {DOMAIN}:sel2:{der_b64(key, fmt)}\n",
            mode=mode,
            owner=owner,
            group="opendkim",
        )
        reload_log = od.reload()
        after_reload = od.sign(message("b2"), SENDER)
    assert [s["s"] for s in signatures(at_start)] == ["sel1"]
    assert verify_all(at_start, dns) == [True]
    assert logged(od, "configuration reloaded", reload_log), reload_log
    assert [s["s"] for s in signatures(after_reload)] == ["sel2"]
    assert verify_all(after_reload, dns) == [True]
    # RequireSafeKeys (default yes) checks key files only: nothing about the inline key.
    assert not any("not secure" in line for line in od.log_lines())


@pytest.mark.parametrize("inline", ["der-2048", "pem-one-line"])
def test_opendkim_inline_key_too_long_or_pem_is_refused(
    root: Path, started: list[OpenDkim | Rspamd], inline: str
) -> None:
    """A 2048-bit key in base64 DER is ~1.6 KiB: OpenDKIM reads table lines with a 1 KiB
    buffer, so the key is cut and every message is held (451). PEM needs line breaks, which
    a KeyTable line cannot carry."""
    need_opendkim()
    key = rsa_key(2048)
    value = der_b64(key) if inline == "der-2048" else pem(key).decode().replace("\n", "")
    _, key_table, signing_table = opendkim_files(root)
    install_file(signing_table, f"*@{DOMAIN} k1\n")
    install_file(key_table, f"k1 {DOMAIN}:sel1:{value}\n", mode=0o640, group="opendkim")
    od = OpenDkim(root, key_table, signing_table)
    started.append(od)
    with od, pytest.raises(SignerError, match="451"):
        od.milter(message("b3"), SENDER)
    expected = "d2i_PrivateKey_bio() failed" if inline == "der-2048" else "PEM_read_bio"
    assert logged(od, expected), od.log_lines()


def test_opendkim_inline_key_in_world_readable_keytable_still_signs(
    root: Path, started: list[OpenDkim | Rspamd]
) -> None:
    """Measured hazard: no safe-key check applies to an inline key or to the KeyTable."""
    need_opendkim()
    dns = DnsStub()
    key = rsa_key(1024)
    dns.publish("sel1", key)
    _, key_table, signing_table = opendkim_files(root)
    install_file(signing_table, f"*@{DOMAIN} k1\n")
    install_file(key_table, f"k1 {DOMAIN}:sel1:{der_b64(key)}\n", mode=0o644)
    od = OpenDkim(root, key_table, signing_table)
    started.append(od)
    with od:
        signed = od.sign(message("b4"), SENDER)
    assert verify_all(signed, dns) == [True]
    assert not any("not secure" in line for line in od.log_lines())


def test_opendkim_unreadable_keytable_on_reload_keeps_old_tables(
    root: Path, started: list[OpenDkim | Rspamd]
) -> None:
    """0600 root:root is read at start (as root) but not on reload (as opendkim): the reload
    is refused with a log line and the old tables keep signing."""
    need_opendkim()
    dns = DnsStub()
    old, new = rsa_key(), rsa_key()
    dns.publish("sel1", old)
    dns.publish("sel2", new)
    keys, key_table, signing_table = opendkim_files(root)
    for name, key in (("sel1", old), ("sel2", new)):
        install_file(keys / f"{name}.pem", pem(key), mode=0o600, owner="opendkim", group="opendkim")
    install_file(signing_table, f"*@{DOMAIN} k1\n")
    install_file(key_table, f"k1 {DOMAIN}:sel1:{keys / 'sel1.pem'}\n", mode=0o600)
    od = OpenDkim(root, key_table, signing_table)
    started.append(od)
    with od:
        first = od.sign(message("b5"), SENDER)
        install_file(key_table, f"k1 {DOMAIN}:sel2:{keys / 'sel2.pem'}\n", mode=0o600)
        reload_log = od.reload()
        second = od.sign(message("b6"), SENDER)
    assert [s["s"] for s in signatures(first)] == ["sel1"]
    assert logged(od, "Permission denied", reload_log), reload_log
    assert not any("configuration reloaded" in line for line in reload_log)
    assert [s["s"] for s in signatures(second)] == ["sel1"]
    assert verify_all(second, dns) == [True]


# ------------------------------------------------------------------ (c) OpenDKIM, Ed25519


def test_opendkim_ed25519_instance_signs_with_pkcs8_pem_file(
    root: Path, started: list[OpenDkim | Rspamd]
) -> None:
    need_opendkim()
    dns = DnsStub()
    key = ed25519.Ed25519PrivateKey.generate()
    dns.publish("ed1", key)
    keys, key_table, signing_table = opendkim_files(root)
    install_file(keys / "ed1.pem", pem(key), mode=0o600, owner="opendkim", group="opendkim")
    install_file(key_table, f"ed {DOMAIN}:ed1:{keys / 'ed1.pem'}\n", mode=0o640, group="opendkim")
    install_file(signing_table, f"*@{DOMAIN} ed\n")
    od = OpenDkim(root, key_table, signing_table, algorithm="ed25519")
    started.append(od)
    with od:
        signed = od.sign(message("c1"), SENDER)
    assert signatures(signed) == [{"a": "ed25519-sha256", "s": "ed1", "d": DOMAIN}]
    assert verify_all(signed, dns) == [True]


@pytest.mark.parametrize("inline", ["pkcs8-der", "raw-seed"])
def test_opendkim_ed25519_inline_key_is_refused(
    root: Path, started: list[OpenDkim | Rspamd], inline: str
) -> None:
    """libopendkim base64-decodes an inline key only when it starts with "MII" (RSA DER);
    an Ed25519 DER ("MC4C...") or raw seed is parsed as binary DER and fails: 451."""
    need_opendkim()
    key = ed25519.Ed25519PrivateKey.generate()
    if inline == "pkcs8-der":
        value = der_b64(key)
    else:
        raw = key.private_bytes(ser.Encoding.Raw, ser.PrivateFormat.Raw, ser.NoEncryption())
        value = base64.b64encode(raw).decode()
    _, key_table, signing_table = opendkim_files(root)
    install_file(key_table, f"ed {DOMAIN}:ed1:{value}\n", mode=0o640, group="opendkim")
    install_file(signing_table, f"*@{DOMAIN} ed\n")
    od = OpenDkim(root, key_table, signing_table, algorithm="ed25519")
    started.append(od)
    with od, pytest.raises(SignerError, match="451"):
        od.milter(message("c2"), SENDER)
    assert logged(od, "d2i_PrivateKey_bio() failed")


def test_opendkim_mixed_key_types_per_algorithm(
    root: Path, started: list[OpenDkim | Rspamd]
) -> None:
    """One table with an RSA and an Ed25519 key for the same sender: the RSA instance holds
    the message ("expecting an rsa key"); the Ed25519 instance signs both, and the signature
    made with the RSA key claims ed25519-sha256 and does not verify."""
    need_opendkim()
    dns = DnsStub()
    ek, rk = ed25519.Ed25519PrivateKey.generate(), rsa_key()
    dns.publish("ed1", ek)
    dns.publish("rs1", rk)
    keys, key_table, signing_table = opendkim_files(root)
    install_file(keys / "ed1.pem", pem(ek), mode=0o600, owner="opendkim", group="opendkim")
    install_file(keys / "rs1.pem", pem(rk), mode=0o600, owner="opendkim", group="opendkim")
    install_file(
        key_table,
        f"ed {DOMAIN}:ed1:{keys / 'ed1.pem'}\nrs {DOMAIN}:rs1:{keys / 'rs1.pem'}\n",
        mode=0o640,
        group="opendkim",
    )
    install_file(signing_table, f"*@{DOMAIN} ed\n*@{DOMAIN} rs\n")
    rsa_od = OpenDkim(root, key_table, signing_table, algorithm="rsa", name="od-rsa")
    ed_od = OpenDkim(root, key_table, signing_table, algorithm="ed25519", name="od-ed")
    started += [rsa_od, ed_od]
    with rsa_od, ed_od:
        with pytest.raises(SignerError, match="451"):
            rsa_od.milter(message("c3"), SENDER)
        both = ed_od.sign(message("c4"), SENDER)
    assert logged(rsa_od, "expecting an rsa key")
    assert signatures(both) == [
        {"a": "ed25519-sha256", "s": "ed1", "d": DOMAIN},
        {"a": "ed25519-sha256", "s": "rs1", "d": DOMAIN},
    ]
    assert verify_all(both, dns) == [True, False]


# ------------------------------------------------------------------ (d) rspamd


def rspamd_signing_conf(path: Path, selectors: list[tuple[str, Path]]) -> None:
    """What rotator would generate: one domain block, its selectors and key paths."""
    entries = ",\n".join(f'      {{ selector = "{s}"; path = "{p}"; }}' for s, p in selectors)
    text = f"domain {{\n  {DOMAIN} {{\n    selectors [\n{entries}\n    ]\n  }}\n}}\n"
    install_file(path, text)


def test_rspamd_two_selectors_rsa_and_ed25519(root: Path, started: list[OpenDkim | Rspamd]) -> None:
    need_rspamd()
    dns = DnsStub()
    rk, ek = rsa_key(), ed25519.Ed25519PrivateKey.generate()
    dns.publish("r1", rk)
    dns.publish("e1", ek)
    keys = make_dir(root / "keys", mode=0o750, group="_rspamd")
    install_file(keys / "r1.key", pem(rk), mode=0o640, group="_rspamd")
    install_file(keys / "e1.key", rspamd_ed25519(ek), mode=0o640, group="_rspamd")
    install_file(keys / "e1.pem", pem(ek), mode=0o640, group="_rspamd")
    install_file(keys / "r1.private", pem(rk), mode=0o600)  # root only: _rspamd cannot read
    conf = root / "dkim_signing.conf"
    rspamd_signing_conf(conf, [("r1", keys / "r1.key"), ("e1", keys / "e1.key")])

    rs = Rspamd(root, conf)
    started.append(rs)
    with rs:
        msg = message("d1")
        values = rs.sign(msg, SENDER)
        reply = rs.check(msg, SENDER)
        # Ed25519 as PKCS#8 PEM, and a key _rspamd cannot read: HTTP 200, no signature.
        rspamd_signing_conf(conf, [("e1", keys / "e1.pem")])
        rs.reload()
        pem_ed = rs.sign(msg, SENDER)
        rspamd_signing_conf(conf, [("r1", keys / "r1.private")])
        rs.reload()
        unreadable = rs.sign(msg, SENDER)
    signed = with_signatures(msg, values)
    assert [s["s"] for s in signatures(signed)] == ["r1", "e1"]
    assert [s["a"] for s in signatures(signed)] == ["rsa-sha256", "ed25519-sha256"]
    assert verify_all(signed, dns) == [True, True]
    assert isinstance(reply["dkim-signature"], list)  # one selector gives a plain string
    assert pem_ed == [] and unreadable == []
    log = "\n".join(rs.log_lines())
    assert "cannot extract rsa key from evp key" in log
    assert "Permission denied" in log


# ------------------------------------------------------------------ (e) rotation


def test_opendkim_rotation_by_atomic_rewrite_and_reload(
    root: Path, started: list[OpenDkim | Rspamd]
) -> None:
    need_opendkim()
    dns = DnsStub()
    old, new = rsa_key(), rsa_key()
    dns.publish("2025a", old)
    dns.publish("2025b", new)
    keys, key_table, signing_table = opendkim_files(root)
    for name, key in (("2025a", old), ("2025b", new)):
        install_file(keys / f"{name}.pem", pem(key), mode=0o600, owner="opendkim", group="opendkim")
    install_file(key_table, f"k-2025a {DOMAIN}:2025a:{keys / '2025a.pem'}\n", group="opendkim")
    install_file(signing_table, f"*@{DOMAIN} k-2025a\n")
    od = OpenDkim(root, key_table, signing_table)
    started.append(od)
    with od:
        before = od.sign(message("e1"), SENDER)
        install_file(key_table, f"k-2025b {DOMAIN}:2025b:{keys / '2025b.pem'}\n", group="opendkim")
        install_file(signing_table, f"*@{DOMAIN} k-2025b\n")
        od.reload()
        after = od.sign(message("e2"), SENDER)
    assert [s["s"] for s in signatures(before)] == ["2025a"]
    assert [s["s"] for s in signatures(after)] == ["2025b"]
    assert verify_all(before, dns) == [True]
    assert verify_all(after, dns) == [True]


def test_rspamd_rotation_by_atomic_rewrite_and_reload(
    root: Path, started: list[OpenDkim | Rspamd]
) -> None:
    need_rspamd()
    dns = DnsStub()
    old, new = rsa_key(), rsa_key()
    dns.publish("2025a", old)
    dns.publish("2025b", new)
    keys = make_dir(root / "keys", mode=0o750, group="_rspamd")
    install_file(keys / "2025a.key", pem(old), mode=0o640, group="_rspamd")
    install_file(keys / "2025b.key", pem(new), mode=0o640, group="_rspamd")
    conf = root / "dkim_signing.conf"
    rspamd_signing_conf(conf, [("2025a", keys / "2025a.key")])
    rs = Rspamd(root, conf)
    started.append(rs)
    with rs:
        msg = message("e3")
        before = rs.sign(msg, SENDER)
        rspamd_signing_conf(conf, [("2025b", keys / "2025b.key")])
        seconds = rs.reload()
        after = rs.sign(msg, SENDER)
        # A file rspamd cannot parse: the reload is refused and the last good config signs.
        install_file(conf, 'domain { example.com { selectors [ { selector = "x"; path =\n')
        with pytest.raises(RuntimeError, match="kept its old configuration"):
            rs.reload()
        still = rs.sign(msg, SENDER)
    assert seconds < 60
    assert [s["s"] for s in signatures(with_signatures(msg, before))] == ["2025a"]
    assert [s["s"] for s in signatures(with_signatures(msg, after))] == ["2025b"]
    assert verify_all(with_signatures(msg, after), dns) == [True]
    assert [s["s"] for s in signatures(with_signatures(msg, still))] == ["2025b"]


def test_signed_message_prepends_crlf_headers() -> None:
    result = MilterResult([("DKIM-Signature", " v=1; a=x;\n\tb=abc")], "accept")
    out = signed_message(b"From: a@b\r\n\r\nx\r\n", result)
    assert out == b"DKIM-Signature: v=1; a=x;\r\n\tb=abc\r\nFrom: a@b\r\n\r\nx\r\n"
