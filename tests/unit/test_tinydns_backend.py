"""kind = "tinydns" without its servers: the lines it writes (255-octet strings, escapes,
the 512-octet UDP answer), the SOA zones of base_data, data built and installed everywhere,
and the probe asking over TCP when tinydns truncates. tests/integration/backends runs it
against two tinydns processes."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import struct
import threading
from pathlib import Path

import dns.flags
import dns.message
import dns.rrset
import pytest

from rotator.adapters.dns.probe import AuthoritativeProbe
from rotator.adapters.dns.tinydns import TinydnsPublisher, data_line, soa_zones
from rotator.config.backends.tinydns import TinydnsConfig
from rotator.domain.errors import PublishError

from .test_file_backends import RSA, ZONE, rec


def test_a_tinydns_line_holds_the_text_in_255_octet_strings_with_colons_escaped() -> None:
    line = data_line(rec("s1", "v=DKIM1; n=a:b\\c; p=" + "B" * 300), tcp=False)
    assert line.startswith(f":s1.myesp._domainkey.{ZONE}:16:\\377v=DKIM1; n=a\\072b\\134c; p=")
    assert "\\101" + "B" * 65 + ":300\n" in line  # the second string: 65 octets (octal 101)
    assert line.endswith(":300\n")


def test_an_answer_over_512_octets_is_refused_unless_tcp_is_served() -> None:
    data_line(rec("nov2026"), tcp=False)  # an RSA-2048 record under a usual name fits
    long = rec("a-selector-name-far-longer-than-anyone-would-choose-2026")
    with pytest.raises(PublishError, match=r"answer would be 5\d\d octets.*set tcp = true"):
        data_line(long, tcp=False)
    assert data_line(long, tcp=True)
    with pytest.raises(PublishError, match="not ASCII"):
        data_line(rec("s1", "v=DKIM1; p=\u00e9"), tcp=False)


def test_tinydns_zones_are_those_base_data_gives_a_soa(tmp_path: Path) -> None:
    base = tmp_path / "data"
    base.write_text(
        "Zdkim.esp.test:ns1.esp.test.:hostmaster.esp.test.::2:1:600:2:60\n"
        ".Other.Test:192.0.2.1:a\n"
        ":gen\\145ric.test:6:\\000:60\n"
        "&dkim.esp.test::ns1.esp.test.:60\n+ns1.esp.test:192.0.2.1\n# Zcomment.test\n"
    )
    assert soa_zones(base) == {"dkim.esp.test", "other.test", "generic.test"}
    with pytest.raises(PublishError, match="cannot read base_data"):
        soa_zones(tmp_path / "missing")


def test_tinydns_data_is_base_data_then_rotator_s_lines_installed_everywhere(
    tmp_path: Path,
) -> None:
    """tinydns-data stood in for by a copy (data.cdb = data): the servers without theirs."""
    base = tmp_path / "base.data"
    base.write_bytes(f"Z{ZONE}:ns1.{ZONE}.:h.{ZONE}.\n'note.{ZONE}:caf\xe9".encode("latin-1"))
    roots = [tmp_path / "root1", tmp_path / "root2"]
    for d in (*roots, tmp_path / "build"):
        d.mkdir()
    cfg = TinydnsConfig(
        name="tiny",
        kind="tinydns",
        zones=(ZONE, "other.test"),
        nameservers=(),
        timeout=5.0,
        directory=tmp_path / "build",
        base_data=base,
        tinydns_data=_copy_script(tmp_path),
        roots=(roots[0],),
        deliver=(("sh", "-c", f"cat > {roots[1]}/data.cdb"),),
    )
    pub = TinydnsPublisher(cfg)
    ok, unserved = pub.publish(
        [(ZONE, [rec("s1")]), ("other.test", [rec("s1", zone="other.test")])]
    )
    assert ok == f"tinydns data.cdb on {roots[0]}, sh -c"
    assert isinstance(unserved, PublishError) and "no SOA for other.test" in unserved.reason
    data = (tmp_path / "build" / "data").read_bytes()
    assert data == base.read_bytes() + b"\n" + data_line(rec("s1"), False).encode()
    assert all((r / "data.cdb").read_bytes() == data for r in roots)
    assert oct((roots[0] / "data.cdb").stat().st_mode & 0o777) == "0o644"
    pub.cfg = dataclasses.replace(pub.cfg, deliver=(("sh", "-c", "echo nope >&2; exit 4"),))
    (failed,) = pub.publish([(ZONE, [rec("s2")])])
    assert isinstance(failed, PublishError)
    assert failed.reason == (
        "data.cdb not installed on 1 of 2 servers: sh -c: deliver: 'sh -c echo nope >&2; exit 4' "
        "exited 4: nope"
    )


def _copy_script(tmp_path: Path) -> Path:
    script = tmp_path / "tinydns-data"
    script.write_text("#!/bin/sh\ncp data data.tmp && mv data.tmp data.cdb\n")
    script.chmod(0o755)
    return script


def test_the_probe_asks_over_tcp_when_tinydns_truncates() -> None:
    """tinydns cuts an answer over 512 octets down to the question, TC set, but leaves the
    answer count (dnspython then reads a malformed message); axfrdns answers over TCP."""
    name = f"s1.myesp._domainkey.{ZONE}."
    stop = threading.Event()
    udp, tcp = _same_port()

    def answer(wire: bytes) -> bytes:
        q = dns.message.from_wire(wire)
        r = dns.message.make_response(q)
        r.flags |= dns.flags.AA
        r.answer.append(dns.rrset.from_text(name, 300, "IN", "TXT", f'"{RSA[:255]}" "{RSA[255:]}"'))
        return r.to_wire()

    def serve_udp() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                wire, peer = udp.recvfrom(512)
                full = answer(wire)
                header = full[:2] + bytes([full[2] | 0x02]) + full[3:12]  # TC, counts kept
                udp.sendto(header + wire[12:], peer)

    def serve_tcp() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                conn, _ = tcp.accept()
                with conn:
                    conn.settimeout(2)
                    size = struct.unpack("!H", conn.recv(2))[0]
                    full = answer(conn.recv(size))
                    conn.sendall(struct.pack("!H", len(full)) + full)

    threads = [threading.Thread(target=f, daemon=True) for f in (serve_udp, serve_tcp)]
    for t in threads:
        t.start()
    try:
        port = udp.getsockname()[1]
        probe = AuthoritativeProbe(timeout=3, nameservers=[f"127.0.0.1:{port}"])
        (seen,) = probe.observe(ZONE, name)
        assert seen.error is None and seen.texts == (RSA,), seen
    finally:
        stop.set()
        for t in threads:
            t.join(2)
        udp.close()
        tcp.close()


def _same_port() -> tuple[socket.socket, socket.socket]:
    for _ in range(50):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        tcp = socket.socket()
        try:
            tcp.bind(("127.0.0.1", udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            continue
        tcp.listen(4)
        for s in (udp, tcp):
            s.settimeout(0.05)
        return udp, tcp
    raise AssertionError("no port free for both UDP and TCP")
