"""A probe runs inside the signer lock: whatever answers it (slow, stuck or hostile) must not
make it last longer than its timeout or read more than its caps. Fake signers on 127.0.0.1."""

from __future__ import annotations

import socket
import struct
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from rotator.adapters.signers.probing import milter, milter_wire
from rotator.adapters.signers.probing.http_post import MAX_REPLY
from rotator.adapters.signers.probing.milter import milter_sign
from rotator.adapters.signers.probing.prober import Prober
from rotator.adapters.signers.probing.rspamd import rspamd_sign
from rotator.config.targets import ProbeConfig
from rotator.domain.errors import SignerError
from rotator.ports import SigningEntry

SENDER = "rotator-probe@a.example"
MESSAGE = b"From: a@a.example\r\nTo: b@b.example\r\nSubject: x\r\n\r\nbody\r\n"

Serve = Callable[[socket.socket, threading.Event], None]


@contextmanager
def peer(serve: Serve) -> Iterator[int]:
    """A TCP server on 127.0.0.1 running `serve` for each connection in its own thread;
    yields its port. On exit every thread is told to stop and joined, every socket closed."""
    stop = threading.Event()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.05)
    threads: list[threading.Thread] = []

    def handle(conn: socket.socket) -> None:
        conn.settimeout(1.0)
        try:
            serve(conn, stop)
        except OSError:
            pass  # the client hung up: what a bounded client does
        finally:
            conn.close()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=handle, args=(conn,), daemon=True)
            threads.append(thread)
            thread.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        acceptor.join(timeout=2)
        listener.close()
        for thread in threads:
            thread.join(timeout=2)
        assert not any(t.is_alive() for t in [acceptor, *threads])


def read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk


def drip(reply: bytes, every: float) -> Serve:
    def serve(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        for i in range(len(reply)):
            if stop.wait(every):
                return
            conn.sendall(reply[i : i + 1])

    return serve


JSON_200 = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


@contextmanager
def measured() -> Iterator[Callable[[], int]]:
    """The peak of Python's allocations meanwhile, in bytes."""
    tracemalloc.start()
    try:
        yield lambda: tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --- rspamd ---------------------------------------------------------------------------------


def test_a_dripping_rspamd_cannot_outlast_the_timeout() -> None:
    with peer(drip(JSON_200, 0.5)) as port:
        started = time.monotonic()
        with pytest.raises(SignerError, match=r"rspamd .*: timed out after 2s"):
            rspamd_sign(f"http://127.0.0.1:{port}/checkv2", MESSAGE, sender=SENDER, timeout=2)
        assert time.monotonic() - started < 2.5


def test_an_oversized_rspamd_reply_is_refused_with_bounded_memory() -> None:
    size = 16 << 20

    def flood(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        block = b"0" * 65536
        for _ in range(size // len(block)):
            if stop.is_set():
                return
            conn.sendall(block)

    with peer(flood) as port, measured() as peak:
        with pytest.raises(SignerError, match=f"reply larger than {MAX_REPLY} bytes"):
            rspamd_sign(f"http://127.0.0.1:{port}/checkv2", MESSAGE, sender=SENDER, timeout=5)
        assert peak() < 4 * MAX_REPLY


def test_an_rspamd_reply_in_chunks_or_until_closed_is_read() -> None:
    body = b'{"dkim-signature": "v=1; a=rsa-sha256"}'
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunks = (b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:10], body[10:], b""))
    chunked += b"".join(chunks)
    for reply in (chunked, b"HTTP/1.0 200 OK\r\n\r\n" + body):
        with peer(drip(reply, 0)) as port:
            url = f"http://127.0.0.1:{port}/checkv2"
            assert rspamd_sign(url, MESSAGE, sender=SENDER, timeout=5) == ["v=1; a=rsa-sha256"]


def test_an_rspamd_http_error_is_a_signer_error() -> None:
    reply = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"
    url = "http://127.0.0.1:{}/checkv2"
    with peer(drip(reply, 0)) as port, pytest.raises(SignerError, match="HTTP 403 Forbidden"):
        rspamd_sign(url.format(port), MESSAGE, sender=SENDER, timeout=5)


def test_the_probe_timeout_bounds_all_its_tries() -> None:
    """Tries that fail fast are retried; a later try that hangs gets only the time left."""
    opened = time.monotonic()

    def unsigned_then_stuck(conn: socket.socket, stop: threading.Event) -> None:
        if time.monotonic() - opened < 1.2:
            read_request(conn)
            conn.sendall(JSON_200)
        else:
            drip(JSON_200, 0.5)(conn, stop)

    entry = SigningEntry("k1", "a.example", "s1", "/nonexistent", "*@a.example", "rsa")
    with peer(unsigned_then_stuck) as port:
        config = ProbeConfig(kind="rspamd", url=f"http://127.0.0.1:{port}", timeout=2)
        started = time.monotonic()
        with pytest.raises(SignerError, match="timed out"):
            Prober(config, lambda zone, name: []).check([entry])
        assert time.monotonic() - started < 2.5


# --- milter ---------------------------------------------------------------------------------

# A milter that wants nothing but the end of the message: the reply to it comes next.
QUIET = (
    milter_wire.P_NOCONNECT | milter_wire.P_NOHELO | milter_wire.P_NOMAIL | milter_wire.P_NORCPT
    | milter_wire.P_NODATA | milter_wire.P_NOHDRS | milter_wire.P_NOEOH | milter_wire.P_NOBODY
)  # fmt: skip


def negotiated(then: Callable[[socket.socket, threading.Event], None]) -> Serve:
    def serve(conn: socket.socket, stop: threading.Event) -> None:
        (length,) = struct.unpack("!I", conn.recv(4, socket.MSG_WAITALL))
        conn.recv(length, socket.MSG_WAITALL)
        conn.sendall(struct.pack("!I", 13) + b"O" + struct.pack("!III", 6, 0x1FF, QUIET))
        then(conn, stop)

    return serve


class Counting:
    """A client socket that counts what it received."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.received = 0

    def recv(self, size: int) -> bytes:
        data = self.sock.recv(size)
        self.received += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


@contextmanager
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Counting]]:
    made: list[Counting] = []

    def connect(address: str, deadline: float) -> Any:
        made.append(Counting(milter_wire._connect(address, deadline)))
        return made[-1]

    monkeypatch.setattr(milter, "_connect", connect)
    yield made


@pytest.mark.parametrize("length", [milter_wire.MAX_PACKET + 1, 1 << 20, 16 << 20])
def test_a_milter_packet_over_the_cap_is_refused_unread(
    monkeypatch: pytest.MonkeyPatch, length: int
) -> None:
    def huge(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(struct.pack("!I", length) + b"O")
        block = b"\0" * 65536
        for _ in range(length // len(block)):
            if stop.is_set():
                return
            conn.sendall(block)

    with peer(huge) as port, counted(monkeypatch) as conns, measured() as peak:
        started = time.monotonic()
        with pytest.raises(SignerError, match=f"packet length {length}"):
            milter_sign(f"127.0.0.1:{port}", MESSAGE, sender=SENDER, recipients=[SENDER], timeout=3)
        assert time.monotonic() - started < 1
        assert conns[0].received == 4
        assert peak() < 1 << 20


@pytest.mark.parametrize(
    "packet",
    [
        b"h" + b"X-Pad\0" + b"a" * 60_000 + b"\0",  # headers added, each under the packet cap
        b"p",  # progress, for ever
    ],
)
def test_a_milter_streaming_replies_is_cut_off_at_the_cap(
    monkeypatch: pytest.MonkeyPatch, packet: bytes
) -> None:
    wire = struct.pack("!I", len(packet)) + packet
    total = 64 << 20  # the peer gives up after this much

    def stream(conn: socket.socket, stop: threading.Event) -> None:
        batch = wire * max(1, 65536 // len(wire))
        for _ in range(total // len(batch)):
            if stop.is_set():
                return
            conn.sendall(batch)

    with peer(negotiated(stream)) as port, counted(monkeypatch) as conns, measured() as peak:
        started = time.monotonic()
        with pytest.raises(SignerError, match="more than"):
            milter_sign(f"127.0.0.1:{port}", MESSAGE, sender=SENDER, recipients=[SENDER], timeout=3)
        assert time.monotonic() - started < 2
        assert conns[0].received <= milter_wire.MAX_RECEIVED + milter_wire.MAX_PACKET
        assert peak() < 4 * milter_wire.MAX_RECEIVED


def test_after_a_key_fails_no_further_probe_starts() -> None:
    """A signer that never signs fails the check within about one probe timeout, not one per
    batch of 16 keys: 40 keys here, three batches."""

    def unsigned(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        conn.sendall(JSON_200)

    keys = [
        SigningEntry(f"k{i}", f"d{i}.example", "s1", "/nonexistent", f"*@d{i}.example", "rsa")
        for i in range(40)
    ]
    with peer(unsigned) as port:
        config = ProbeConfig(kind="rspamd", url=f"http://127.0.0.1:{port}", timeout=1)
        started = time.monotonic()
        with pytest.raises(SignerError, match=r"made 0 signatures.*; 24 keys not probed"):
            Prober(config, lambda zone, name: []).check(keys)
        assert time.monotonic() - started < 1.4
