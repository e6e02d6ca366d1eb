"""PowerDNS beyond the shared contract, through both kinds that reach it: a batch too big
for one request, the same name twice in a batch, the secondary kept up by NOTIFY alone
(the zone's SOA refresh is an hour), and lexicon asking nothing outside loopback."""

from __future__ import annotations

import base64
import ipaddress
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rotator.adapters.dns.factory import build_publisher
from rotator.adapters.dns.powerdns import PowerDnsPublisher
from rotator.config.settings import load_config
from rotator.ports import Publisher, RecordChange

from .pdns_servers import ZONE, LexiconPdnsServers, PdnsServers
from .servers import wait_served
from .test_contract import POLICIES, RSA, ok

pytestmark = pytest.mark.integration


@pytest.fixture
def pdns(tmp_path: Path) -> Iterator[LexiconPdnsServers]:
    servers = LexiconPdnsServers(tmp_path / "servers")
    try:
        yield servers
    finally:
        servers.stop()


def backend(servers: LexiconPdnsServers, workdir: Path, kind: str) -> Publisher:
    """The publisher of `kind` ("powerdns" or "lexicon") the factory builds for these servers."""
    table = (
        PdnsServers.backend_table(servers, workdir)
        if kind == "powerdns"
        else servers.backend_table(workdir)
    )
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "rotator.toml"
    cfg.write_text(
        f'database = "rotator.db"\nkey_dir = "keys"\npolicy_dir = "{POLICIES}"\n\n'
        f"[dns]\ntimeout = 2.0\n\n{table}\n"
        '[signer]\nkey_table = "KeyTable"\nsigning_table = "SigningTable"\n'
    )
    cfg.chmod(0o600)
    return build_publisher(load_config(cfg).dns).routes[0].backend


def rec(selector: str) -> str:
    return f"{selector}.myesp._domainkey.{ZONE}."


def test_a_batch_too_big_for_one_request_goes_in_several(
    pdns: LexiconPdnsServers, tmp_path: Path
) -> None:
    pub = backend(pdns, tmp_path, "powerdns")
    assert isinstance(pub, PowerDnsPublisher)
    before = pdns.serial("primary")
    changes = [RecordChange(rec(f"b{i}"), 300, RSA) for i in range(2600)]  # about 1.4 MB
    ok(pub.publish([(ZONE, changes)]))
    assert pub.requests == 2
    for i in (0, 1299, 2599):
        wait_served(pdns, rec(f"b{i}"), [RSA], timeout=10)
    assert (pdns.serial("primary") or 0) > (before or 0)  # PowerDNS raised the serial


@pytest.mark.parametrize("kind", ["powerdns", "lexicon"])
def test_the_last_change_of_a_name_in_a_batch_wins(
    pdns: LexiconPdnsServers, tmp_path: Path, kind: str
) -> None:
    pub = backend(pdns, tmp_path, kind)
    other = "v=DKIM1; k=ed25519; p=" + base64.b64encode(secrets.token_bytes(32)).decode()
    batch = [RecordChange(rec("d"), 300, RSA), RecordChange(rec("d"), 300, other)]
    ok(pub.publish([(ZONE, batch)]))
    wait_served(pdns, rec("d"), [other], timeout=10)
    ok(
        pub.publish(
            [(ZONE, [RecordChange(rec("d"), 300, other), RecordChange(rec("d"), 300, None)])]
        )
    )
    wait_served(pdns, rec("d"), [], timeout=10)


def test_a_wrong_server_id_is_one_line(pdns: LexiconPdnsServers, tmp_path: Path) -> None:
    pub = PowerDnsPublisher(pdns.url, "nope", pdns.api_key, timeout=3)
    assert pub.zone_problem(ZONE) == (
        f"PowerDNS {pdns.url} has no zone {ZONE} (server nope): create it there, or give "
        "the zone to another backend"
    )


def test_lexicon_asks_nothing_outside_and_resends_nothing(
    pdns: LexiconPdnsServers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside: list[str] = []
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and not ipaddress.ip_address(host).is_loopback:
            outside.append(str(address))
            raise OSError("outside loopback")
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    pub = backend(pdns, tmp_path, "lexicon")
    assert pub.zone_problem(ZONE) is None
    ok(pub.publish([(ZONE, [RecordChange(rec("l"), 300, RSA)])]))
    wait_served(pdns, rec("l"), [RSA], timeout=10)
    serial = pdns.serial("primary")
    ok(pub.publish([(ZONE, [RecordChange(rec("l"), 300, RSA)])]))
    assert pdns.serial("primary") == serial  # already there: no change was sent
    assert outside == []
