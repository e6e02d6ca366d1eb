"""kind = "tinydns" without its servers: the lines it writes (255-octet strings, escapes,
the 512-octet UDP answer), the SOA zones and names of base_data (a name rotator publishes there
is refused), data built and installed everywhere, and the probe asking over TCP when tinydns
truncates. tests/integration/backends runs it
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
from rotator.adapters.dns.tinydns import (
    TinydnsPublisher,
    data_line,
    data_name,
    read_base,
    soa_zones,
)
from rotator.config.backends.tinydns import TinydnsConfig
from rotator.domain.errors import PublishError
from rotator.domain.reasons import Reason

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


def test_base_data_names_are_read_as_tinydns_data_reads_them(tmp_path: Path) -> None:
    assert data_name("S1.\\115yEsp..\\137domainkey.Dkim.ESP.test.") == f"s1.myesp._domainkey.{ZONE}"
    assert data_name("a\\1b.\\Test") == "a\x01b.test"  # 1 to 3 octal digits, \c is c
    assert data_name("x\\056y.test") == data_name("x\\.y.test") == "x\\056y.test"  # one label
    assert data_name("x\\056y.test") != data_name("x.y.test") == "x.y.test"
    base = tmp_path / "data"
    lines = [
        "Zdkim.esp.test:ns1.esp.test.:hostmaster.esp.test.::2:1:600:2:60",  # 1
        "&dkim.esp.test::ns1.esp.test.:60",
        "# 'comment.dkim.esp.test:not a record",
        "-minus.dkim.esp.test:192.0.2.9:60",  # a line tinydns-data skips
        "%lo:192.0.2",  # 5
        "+plus.dkim.esp.test:192.0.2.1",
        "=Equal.Dkim.Esp.Test.:192.0.2.2",
        "'quote.dkim.esp.test:caf\xe9 \x85 and more:60",  # \x85 ends no line
        "Ccname.dkim.esp.test:target.esp.test.",
        "@mx.dkim.esp.test::mail.esp.test.:10",  # 10
        "^2.2.0.192.in-addr.arpa:equal.dkim.esp.test",
        ":gen\\145ric.dkim.esp.test:16:\\003abc:60",
        ".dot.test:192.0.2.3:a",
        "S_sip._tcp.dkim.esp.test::sip.esp.test.:5060",
        "+bare.dkim.esp.test  \t",  # 15: no ':' at all, trailing blanks
        "'quote.dkim.esp.test:again:60",
        "*wild:not a record type",
    ]
    base.write_bytes("\n".join(lines).encode("latin-1"))
    read = read_base(base)
    assert read.names == {
        "dkim.esp.test": 1,
        "plus.dkim.esp.test": 6,
        "equal.dkim.esp.test": 7,
        "quote.dkim.esp.test": 8,
        "cname.dkim.esp.test": 9,
        "mx.dkim.esp.test": 10,
        "2.2.0.192.in-addr.arpa": 11,
        "generic.dkim.esp.test": 12,
        "dot.test": 13,
        "_sip._tcp.dkim.esp.test": 14,
        "bare.dkim.esp.test": 15,
    }
    assert read.zones == {"dkim.esp.test", "dot.test"}


def tinydns(tmp_path: Path, base: str, *zones: str) -> TinydnsPublisher:
    """base_data holding `base`, tinydns-data a copy, one root."""
    (tmp_path / "base.data").write_text(base)
    for d in ("root", "build"):
        (tmp_path / d).mkdir(exist_ok=True)
    cfg = TinydnsConfig(
        name="tiny",
        kind="tinydns",
        zones=zones,
        nameservers=(),
        timeout=5.0,
        directory=tmp_path / "build",
        base_data=tmp_path / "base.data",
        tinydns_data=_copy_script(tmp_path),
        roots=(tmp_path / "root",),
    )
    return TinydnsPublisher(cfg)


def test_a_name_base_data_holds_is_refused_and_nothing_built(tmp_path: Path) -> None:
    other = "other.test"
    soas = f"Z{ZONE}:ns1.{ZONE}.:h.{ZONE}.\nZ{other}:ns1.{other}.:h.{other}.\n"
    pub = tinydns(tmp_path, soas, ZONE, other)
    base, where = tmp_path / "base.data", f"tinydns data.cdb on {tmp_path / 'root'}"
    assert pub.publish([(ZONE, [rec("s1")])]) == [where]
    files = [tmp_path / "build" / f for f in ("rotator.data", "data", "data.cdb")]
    files.append(tmp_path / "root" / "data.cdb")
    before = [f.read_bytes() for f in files]
    s1 = f"s1.myesp._domainkey.{ZONE}"

    # the operator wrote a name rotator owns, in its own spelling: every batch is refused
    base.write_text(soas + f"# by hand\n'S1.MyEsp.\\137domainkey.{ZONE.upper()}.:old:60\n")
    for refused in pub.publish([(ZONE, [rec("s2")]), (other, [rec("s1", zone=other)])]):
        assert isinstance(refused, PublishError) and refused.code == Reason.DNS_UPDATE_FAILED
        assert refused.reason == (
            f"{s1} is in base_data {base} (line 4): rotator owns that name; remove its lines "
            "from base_data"
        )
    assert [f.read_bytes() for f in files] == before

    # a name the batch publishes or deletes: that zone is refused, the others go out
    base.write_text(soas + f"+s3.myesp._domainkey.{ZONE}:192.0.2.1\n")
    for text in (RSA, None):
        mine, theirs = pub.publish([(ZONE, [rec("s3", text)]), (other, [rec("s4", zone=other)])])
        assert isinstance(mine, PublishError) and mine.code == Reason.DNS_UPDATE_FAILED
        assert mine.reason.startswith(f"s3.myesp._domainkey.{ZONE} is in base_data {base} (line 3)")
        assert theirs == where
    assert "s3.myesp" not in (tmp_path / "build" / "rotator.data").read_text()
    assert "s4.myesp" in (tmp_path / "root" / "data.cdb").read_text()

    # other names are the operator's: a record beside rotator's, one in an escaped label
    base.write_text(soas + f"'note.{ZONE}:hi\n's5\\056myesp._domainkey.{ZONE}:one label\n")
    assert pub.publish([(ZONE, [rec("s2"), rec("s5")])]) == [where]
    assert (tmp_path / "root" / "data.cdb").read_text().count(":16:") == 4  # s1 s2 s4 s5


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
