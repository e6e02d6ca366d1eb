"""Many direct TXT queries at once, on the caller's thread: one UDP socket per server
address, up to WINDOW queries outstanding on each, answers matched to their query by id,
source and question. Every query is given its own timeout, or less if the call's deadline
is nearer, from when it is first sent; unanswered, it is sent again after a third of that.
EDNS0 keeps RSA keys' answers in one datagram; an answer truly truncated (TC) is asked
again over TCP.

Verifying 1,000 keys on two servers is 2,000 queries: one thread and two sockets instead of
a thread per query, and the nameservers see a steady stream instead of bursts."""

from __future__ import annotations

import functools
import heapq
import itertools
import secrets
import selectors
import socket
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype

from ...domain.verification import Observation
from . import wire

WINDOW = 64  # queries outstanding per server address
MAX_IN_FLIGHT = 512  # over every address of one call
RESENDS = 3  # sends of one query over its timeout at most
TCP_AT_ONCE = 8  # truncated answers asked again over TCP concurrently
RCVBUF = 1 << 20


@functools.cache
def rcode_text(rcode: int) -> str:
    """NOERROR for 0: dnspython makes an enum member for each call (about as costly as
    reading the answer), and a look at 1,000 keys reads 2,000 answers."""
    return dns.rcode.Rcode.to_text(rcode)


@dataclass(frozen=True)
class Ask:
    nameserver: str
    ip: str
    port: int
    qname: bytes  # wire form, absolute
    qtype: int = wire.TXT  # or wire.SOA

    @property
    def address(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@dataclass(eq=False)
class _Query:
    index: int
    ask: Ask
    qid: int = 0
    sent: float = 0.0  # last sent
    expires: float = 0.0
    wait: float = 0.0  # its timeout as given when first sent
    due: float = 0.0  # when it is sent again, or given up


@dataclass(eq=False)
class _Server:
    """One address: its socket, its queue and the queries in flight on it."""

    ip: str
    port: int
    queue: deque[_Query] = field(default_factory=deque)
    flight: dict[int, _Query] = field(default_factory=dict)
    sock: socket.socket | None = None
    source: tuple[bytes, int] = (b"", 0)

    def open(self) -> None:
        family = socket.AF_INET6 if ":" in self.ip else socket.AF_INET
        self.source = (socket.inet_pton(family, self.ip), self.port)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        except OSError:
            sock.close()
            raise
        self.sock = sock

    def from_it(self, source: tuple[str, int] | tuple[str, int, int, int]) -> bool:
        family = socket.AF_INET6 if ":" in source[0] else socket.AF_INET
        try:
            return (socket.inet_pton(family, source[0]), source[1]) == self.source
        except OSError:
            return False

    def new_id(self) -> int:
        while True:
            qid = secrets.randbelow(65536)
            if qid not in self.flight:
                return qid


class Pipeline:
    """ask_all(): one Observation per Ask, in order."""

    def __init__(self, asks: Sequence[Ask], timeout: float, deadline: float) -> None:
        self.timeout = timeout
        self.deadline = deadline
        self.results: list[Observation | None] = [None] * len(asks)
        self.unanswered = len(asks)
        self.truncated: list[_Query] = []
        self.servers: dict[tuple[str, int], _Server] = {}
        self.in_flight = 0
        # (due, order, server, query): the next resend or timeout first (stale entries of
        # answered or resent queries are skipped when they come up)
        self.timers: list[tuple[float, int, _Server, _Query]] = []
        self.order = itertools.count()
        for index, ask in enumerate(asks):
            server = self.servers.setdefault((ask.ip, ask.port), _Server(ask.ip, ask.port))
            server.queue.append(_Query(index, ask))

    def _finish(self, q: _Query, obs: Observation | None = None, error: str = "") -> None:
        ask = q.ask
        self.results[q.index] = obs or Observation(ask.nameserver, ask.address, error=error)
        self.unanswered -= 1

    def _land(self, server: _Server, q: _Query) -> None:
        """q is no longer in flight."""
        del server.flight[q.qid]
        self.in_flight -= 1

    def ask_all(self) -> list[Observation]:
        with selectors.DefaultSelector() as sel:
            try:
                for server in self.servers.values():
                    try:
                        server.open()
                    except OSError as exc:
                        for q in server.queue:
                            self._finish(q, error=f"query failed: {exc}")
                        server.queue.clear()
                        continue
                    assert server.sock is not None
                    sel.register(server.sock, selectors.EVENT_READ, server)
                self._loop(sel)
            finally:
                for server in self.servers.values():
                    if server.sock is not None:
                        server.sock.close()
        self._over_tcp()
        return [r for r in self.results if r is not None]

    def _loop(self, sel: selectors.BaseSelector) -> None:
        servers = [s for s in self.servers.values() if s.sock is not None]
        while self.unanswered > len(self.truncated):
            now = time.monotonic()
            self._timers(now)
            for server in servers:
                if server.queue:
                    self._send(server, now)
            wake = self.timers[0][0] if self.timers else now
            for key, _ in sel.select(max(0.0, wake - time.monotonic())):
                self._receive(key.data)

    def _timers(self, now: float) -> None:
        while self.timers and self.timers[0][0] <= now:
            due, _, server, q = heapq.heappop(self.timers)
            if server.flight.get(q.qid) is not q or q.due != due:
                continue  # answered, or sent again since
            if q.expires <= now:
                self._land(server, q)
                self._finish(q, error=f"timeout after {q.wait:g}s")
            else:  # lost, or the server is slow: again, under the same id
                q.sent = now
                self._sendto(server, q)

    def _send(self, server: _Server, now: float) -> None:
        while server.queue and len(server.flight) < WINDOW and self.in_flight < MAX_IN_FLIGHT:
            q = server.queue.popleft()
            left = self.deadline - now
            if left <= 0:
                self._finish(q, error="timeout: no time left")
                continue
            q.qid, q.sent = server.new_id(), now
            q.wait = min(self.timeout, left)
            q.expires = now + q.wait
            server.flight[q.qid] = q
            self.in_flight += 1
            self._sendto(server, q)

    def _sendto(self, server: _Server, q: _Query) -> None:
        assert server.sock is not None
        try:
            server.sock.sendto(
                wire.query(q.ask.qname, q.qid, q.ask.qtype), (server.ip, server.port)
            )
        except (BlockingIOError, InterruptedError):
            pass  # a full send buffer: the resend timer sends it again
        except OSError as exc:
            self._land(server, q)
            self._finish(q, error=f"query failed: {exc}")
            return
        q.due = min(q.expires, q.sent + q.wait / RESENDS)
        heapq.heappush(self.timers, (q.due, next(self.order), server, q))

    def _receive(self, server: _Server) -> None:
        assert server.sock is not None
        while True:
            try:
                data, source = server.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. an ICMP error reported late: the query times out
                return
            if len(data) < 2 or not server.from_it(source):
                continue
            q = server.flight.get(int.from_bytes(data[:2], "big"))
            if q is None:
                continue  # a late answer to a query already answered or given up
            try:
                answer = wire.read(data, q.qid, q.ask.qname, q.ask.qtype)
            except wire.Malformed as exc:
                self._land(server, q)
                self._finish(q, error=f"query failed: malformed answer: {exc}")
                continue
            if answer is None:
                continue  # not the answer to this query: keep waiting for it
            self._land(server, q)
            if answer.truncated:
                self.truncated.append(q)
                continue
            obs = Observation(
                q.ask.nameserver,
                q.ask.address,
                rcode=rcode_text(answer.rcode),
                authoritative=answer.authoritative,
                texts=answer.texts,
                serial=answer.serial,
            )
            self._finish(q, obs)

    def _over_tcp(self) -> None:
        if not self.truncated:
            return
        with ThreadPoolExecutor(min(TCP_AT_ONCE, len(self.truncated))) as pool:
            for q, obs in zip(self.truncated, pool.map(self._tcp, self.truncated), strict=True):
                self._finish(q, obs)

    def _tcp(self, q: _Query) -> Observation:
        ask = q.ask
        left = self.deadline - time.monotonic()
        if left <= 0:
            return Observation(ask.nameserver, ask.address, error="timeout: no time left")
        wait = min(self.timeout, left)
        name = dns.name.from_wire(ask.qname, 0)[0]
        query = dns.message.make_query(name, dns.rdatatype.RdataType(ask.qtype))
        query.flags &= ~dns.flags.RD
        try:
            r = dns.query.tcp(query, ask.ip, port=ask.port, timeout=wait)
        except dns.exception.Timeout:
            return Observation(ask.nameserver, ask.address, error=f"timeout after {wait:g}s")
        except (OSError, EOFError, dns.exception.DNSException) as exc:
            return Observation(ask.nameserver, ask.address, error=f"query failed: {exc}")
        rdatas = [rd for rs in r.answer if rs.name == name and rs.rdtype == ask.qtype for rd in rs]
        return Observation(
            ask.nameserver,
            ask.address,
            rcode=rcode_text(r.rcode()),
            authoritative=bool(r.flags & dns.flags.AA),
            texts=tuple(
                b"".join(rd.strings).decode("ascii", "replace")
                for rd in rdatas
                if rd.rdtype == dns.rdatatype.TXT
            ),
            serial=next((rd.serial for rd in rdatas if rd.rdtype == dns.rdatatype.SOA), None),
        )


def ask_all(asks: Sequence[Ask], timeout: float, deadline: float) -> list[Observation]:
    return Pipeline(asks, timeout, deadline).ask_all()
