"""The probe's pipelined queries against a scripted DNS server on loopback: lost datagrams
are asked again, forged or stray answers are ignored, at most WINDOW queries are
outstanding on one address, and the deadline bounds the whole call."""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import dns.flags
import dns.message
import dns.rrset

from rotator.adapters.dns.pipeline import WINDOW
from rotator.adapters.dns.probe import AuthoritativeProbe
from rotator.domain.errors import ProbeError

ZONE = "example.test"
# (query, how many times this name was asked before) -> datagrams to send back, each with
# the socket to send it from ("main" or "other")
Script = Callable[[dns.message.Message, int], list[tuple[str, bytes]]]


def answer(query: dns.message.Message, text: str) -> bytes:
    r = dns.message.make_response(query)
    r.flags |= dns.flags.AA
    name = query.question[0].name
    r.answer.append(dns.rrset.from_text(name, 60, "IN", "TXT", f'"{text}"'))
    return r.to_wire()


def text_of(query: dns.message.Message) -> str:
    return "v=DKIM1; p=" + query.question[0].name.labels[0].decode()


class Server:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.other.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.asked: dict[str, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def serve(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self.sock, selectors.EVENT_READ)
            while not self.stop.is_set():
                if not sel.select(0.05):
                    continue
                data, peer = self.sock.recvfrom(4096)
                query = dns.message.from_wire(data)
                name = query.question[0].name.to_text()
                seen = self.asked.get(name, 0)
                self.asked[name] = seen + 1
                for via, datagram in self.script(query, seen):
                    (self.sock if via == "main" else self.other).sendto(datagram, peer)


@contextmanager
def serving(script: Script) -> Iterator[Server]:
    server = Server(script)
    server.thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        server.thread.join(2)
        server.sock.close()
        server.other.close()


def names(n: int) -> list[tuple[str, str]]:
    return [(ZONE, f"k{i}.myesp._domainkey.{ZONE}.") for i in range(n)]


def probe(server: Server, timeout: float) -> AuthoritativeProbe:
    return AuthoritativeProbe(timeout=timeout, nameservers=[f"127.0.0.1:{server.port}"])


def test_lost_datagrams_are_asked_again_within_the_timeout() -> None:
    def drop_first(query: dns.message.Message, seen: int) -> list[tuple[str, bytes]]:
        return [("main", answer(query, text_of(query)))] if seen else []

    with serving(drop_first) as server:
        started = time.monotonic()
        results = probe(server, timeout=1.5).observe_many(names(100))
        assert time.monotonic() - started < 1.5  # the first resend came after 0.5 s
    for (_, name), result in zip(names(100), results, strict=True):
        assert not isinstance(result, ProbeError)
        (obs,) = result
        assert obs.error is None and obs.texts == ("v=DKIM1; p=" + name.split(".")[0],)


def test_forged_and_stray_answers_are_ignored() -> None:
    def forged_first(query: dns.message.Message, seen: int) -> list[tuple[str, bytes]]:
        other_question = dns.message.make_query("evil.example.test.", "TXT")
        other_question.id = query.id
        return [
            ("other", answer(query, "v=DKIM1; p=forged")),  # right id, wrong source port
            ("main", answer(other_question, "v=DKIM1; p=forged")),  # right id, other name
            ("main", b"\x00"),  # not even a header
            ("main", answer(query, text_of(query))),
        ]

    with serving(forged_first) as server:
        results = probe(server, timeout=2).observe_many(names(20))
    for result in results:
        assert not isinstance(result, ProbeError)
        assert "forged" not in result[0].texts[0] and result[0].error is None


def test_a_silent_server_holds_at_most_a_window_and_the_deadline_ends_the_call() -> None:
    with serving(lambda query, seen: []) as server:
        started = time.monotonic()
        results = probe(server, timeout=5).observe_many(names(300), time.monotonic() + 0.4)
        took = time.monotonic() - started
        assert len(server.asked) == WINDOW  # never more names outstanding at once
    assert took < 1.0
    errors = [r[0].error for r in results if not isinstance(r, ProbeError)]
    assert errors.count("timeout: no time left") == 300 - WINDOW
    assert all(e and e.startswith("timeout after 0.") for e in errors[:WINDOW])


def test_results_keep_the_order_of_the_queries_with_errors_in_place() -> None:
    with serving(lambda query, seen: [("main", answer(query, text_of(query)))]) as server:
        queries = [*names(3), (ZONE, "a..b."), *names(5)[3:]]
        results = probe(server, timeout=2).observe_many(queries)
    assert isinstance(results[3], ProbeError) and "invalid name" in results[3].reason
    texts = [r[0].texts for r in results if not isinstance(r, ProbeError)]
    assert texts == [(f"v=DKIM1; p=k{i}",) for i in (0, 1, 2, 3, 4)]
