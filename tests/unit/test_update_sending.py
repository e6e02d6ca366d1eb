"""The RFC 2136 backend sends a zone's UPDATEs one after another: the next leaves only once
the one before was answered (the server applies them in order), and nothing more leaves
after a refusal. A TSIG-checking TCP server on loopback stands in for the primary here;
tests/integration/test_dns_adapters.py runs the same backend against real BIND."""

from __future__ import annotations

import base64
import socket
import struct
import threading
from collections.abc import Iterator

import dns.message
import dns.rcode
import dns.tsigkeyring
import pytest

from rotator.adapters.dns.rfc2136 import Rfc2136Publisher
from rotator.domain.errors import PublishError
from rotator.ports import RecordChange

SECRET = base64.b64encode(b"k" * 32).decode()
KEYRING = dns.tsigkeyring.from_text({"rotator.": SECRET})
TEXT = "v=DKIM1; k=rsa; p=" + "A" * 392
ZONE = "example.test"


class Primary:
    """Answers each UPDATE (its TSIG checked) with NOERROR, or `refuse` for the n-th;
    `log` says in which order UPDATEs came in and were answered."""

    def __init__(self, refuse: int = 0) -> None:
        self.refuse = refuse
        self.log: list[str] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        n = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                (size,) = struct.unpack("!H", _read(conn, 2))
                update = dns.message.from_wire(_read(conn, size), keyring=KEYRING)
                n += 1
                self.log.append(f"got {n}")
                response = dns.message.make_response(update)
                if n == self.refuse:
                    response.set_rcode(dns.rcode.REFUSED)
                wire = response.to_wire()
                self.log.append(f"answered {n}")
                conn.sendall(struct.pack("!H", len(wire)) + wire)

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() (a close alone does not)
        self.sock.close()
        self.thread.join(10)
        assert not self.thread.is_alive()


def _read(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


@pytest.fixture
def primary() -> Iterator[Primary]:
    server = Primary()
    yield server
    server.close()


def changes(n: int) -> list[RecordChange]:
    return [RecordChange(f"s{i}.myesp._domainkey.{ZONE}.", 60, TEXT) for i in range(n)]


def publisher(port: int) -> Rfc2136Publisher:
    return Rfc2136Publisher("127.0.0.1", port, "rotator.", SECRET, timeout=5)


def test_each_update_leaves_once_the_one_before_was_answered(primary: Primary) -> None:
    pub = publisher(primary.port)
    pub.apply(ZONE, changes(400))  # ~450 octets each: four messages of at most 60,000
    n = pub.last_message_count
    assert n > 2
    assert primary.log == [line for i in range(1, n + 1) for line in (f"got {i}", f"answered {i}")]


def test_nothing_more_leaves_after_a_refusal() -> None:
    server = Primary(refuse=2)
    try:
        pub = publisher(server.port)
        with pytest.raises(PublishError, match="REFUSED") as err:
            pub.apply(ZONE, changes(400))
        assert "\n" not in err.value.reason
        assert server.log == ["got 1", "answered 1", "got 2", "answered 2"]
    finally:
        server.close()
