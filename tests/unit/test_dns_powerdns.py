"""kind = "powerdns" without a server: the RRsets a batch becomes, how it is cut into
PATCHes, the TXT form PowerDNS takes, what a dead or silent API is, and the settings
refused when the config loads. tests/integration/backends run it against pdns_server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rotator.adapters.dns.powerdns import PowerDnsPublisher, bodies, rrsets, txt_content
from rotator.domain.errors import PublishError
from rotator.domain.reasons import Reason
from rotator.ports import RecordChange

from .clirun import refused
from .test_dns_backends import backends_only

LONG = "v=DKIM1; k=rsa; p=" + "A" * 392  # 410 octets: two character-strings


def test_txt_content_is_quoted_255_octet_strings() -> None:
    assert txt_content("v=DKIM1; p=") == '"v=DKIM1; p="'
    content = txt_content(LONG)
    assert content == f'"{LONG[:255]}" "{LONG[255:]}"'
    assert txt_content('a"b\\c\td') == '"a\\"b\\\\c\\009d"'
    assert txt_content("") == '""'


def test_one_rrset_per_name_the_last_change_winning() -> None:
    changes = [
        RecordChange("a.zone.test.", 300, "old"),
        RecordChange("b.zone.test", 60, None),
        RecordChange("A.zone.test.", 300, LONG),
    ]
    sets = rrsets("zone.test", changes)
    assert sets == [
        {"name": "b.zone.test.", "type": "TXT", "changetype": "DELETE"},
        {
            "name": "A.zone.test.",
            "type": "TXT",
            "ttl": 300,
            "changetype": "REPLACE",
            "records": [{"content": txt_content(LONG), "disabled": False}],
        },
    ]
    with pytest.raises(PublishError, match=r"invalid record 'x\.zone\.test\.' for zone zone\.test"):
        rrsets("zone.test", [RecordChange("x.zone.test.", 60, "caf\u00e9")])


def test_a_large_batch_is_cut_into_bodies_under_the_limit() -> None:
    sets = rrsets("zone.test", [RecordChange(f"s{i}.zone.test.", 300, LONG) for i in range(1000)])
    out = list(bodies(sets, limit=64 * 1024))
    assert len(out) > 5 and all(len(b) <= 64 * 1024 for b in out)
    assert [r for b in out for r in json.loads(b)["rrsets"]] == sets  # all, in order
    assert len(list(bodies(sets))) == 1  # the default: a 1 MiB PATCH holds these


def publisher(port: int, timeout: float = 0.5) -> PowerDnsPublisher:
    return PowerDnsPublisher(f"http://127.0.0.1:{port}", "localhost", "key", timeout=timeout)


def test_a_dead_api_is_one_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    (result,) = publisher(port).publish([("zone.test", [RecordChange("a.zone.test.", 60, "x")])])
    assert isinstance(result, PublishError)
    assert result.reason.startswith(f"connection refused by PowerDNS http://127.0.0.1:{port}")
    # not answering is not saying the zone is not there: it cannot be asked
    with pytest.raises(PublishError, match="connection refused"):
        publisher(port).zone_problem("zone.test")


@pytest.fixture
def silent() -> Iterator[int]:
    """A webserver that takes the connection and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in held:
            conn.close()
        server.close()


def test_a_silent_api_times_out_within_the_timeout(silent: int) -> None:
    started = time.monotonic()
    (result,) = publisher(silent, timeout=0.3).publish(
        [("zone.test", [RecordChange("a.zone.test.", 60, "x")])]
    )
    assert time.monotonic() - started < 2
    assert isinstance(result, PublishError) and result.code == Reason.DNS_TIMEOUT
    assert result.reason == (
        f"timeout after 0.3s talking to PowerDNS http://127.0.0.1:{silent} for zone zone.test"
    )


TABLE = """
[[dns.backends]]
name = "pdns"
kind = "powerdns"
zones = ["dkim.esp.test"]
api_key_file = "pdns.key"
"""


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        (TABLE.replace('api_key_file = "pdns.key"\n', ""), "backend pdns: api_key_file: missing"),
        (TABLE + 'url = "ftp://127.0.0.1"\n', "backend pdns: url: 'ftp://127.0.0.1': it needs"),
        (TABLE + 'url = "http://127.0.0.1:8081/?key=x"\n', "give only scheme, host, port"),
        (TABLE + 'server_id = "a/b"\n', "backend pdns: server_id: 'a/b' is not a server id"),
        (TABLE + "timeout = 0\n", "backend pdns: timeout: 0: give a number above 0"),
    ],
)
def test_bad_powerdns_settings_are_one_line(tmp_path: Path, table: str, problem: str) -> None:
    line = refused(backends_only(tmp_path, table), "init")
    assert problem in line, line


def test_the_api_key_file_must_be_private(tmp_path: Path) -> None:
    cfg = backends_only(tmp_path, TABLE)
    key = tmp_path / "pdns.key"
    key.write_text("secret\n")
    key.chmod(0o644)
    assert "pdns.key: holds a secret but is readable by others" in refused(cfg, "init")
    key.write_text("\n")
    key.chmod(0o600)
    assert "the PowerDNS API key is empty" in refused(cfg, "init")
