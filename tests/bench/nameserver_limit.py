"""The nameservers' own limit, for the backends benchmark: BIND alone takes a set of TXT
changes to its primary and its secondary, every record checked on each, with no rotator in
between. RFC 2136 UPDATEs of about 125 records, TCP with TSIG, one after another; then
every name is asked of both servers directly (RD=0, EDNS0 1232, UDP), many queries in
flight per server (of the secondary once its SOA serial is the primary's), and asked again
until each server serves exactly the new text."""

from __future__ import annotations

import base64
import heapq
import secrets
import selectors
import socket
import struct
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.tsigkeyring
import dns.update
from dns.message import Message

from rotator.demo.localdns import BindPair
from rotator.domain.record import split_strings

PER_UPDATE = 125  # records per UPDATE (an RSA-2048 record is ~410 octets: ~55 KB each)
IN_FLIGHT = 100  # queries outstanding per server
RESEND_S = 0.2  # a UDP query unanswered this long is sent again
AGAIN_S = 0.005  # a server that does not serve the new text yet is asked again after this
REVOKED = "v=DKIM1; p="


def rsa_record() -> str:
    """A record the size of an RSA-2048 DKIM key (its answer is ~500 octets on the wire)."""
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(secrets.token_bytes(294)).decode()


@dataclass
class Limit:
    updates: int = 0  # UPDATE messages sent
    sent_s: float = 0.0  # until the primary accepted the last UPDATE
    served_s: dict[str, float] = field(default_factory=dict)  # address -> all checked
    total_s: float = 0.0  # until every record was checked on every server
    queries: int = 0
    truncated: int = 0


def updates(pair: BindPair, zone: str, changes: Sequence[tuple[str, str]]) -> list[Message]:
    """`changes` (name, text) in UPDATEs of PER_UPDATE records (signed when sent)."""
    keyring = dns.tsigkeyring.from_text({pair.tsig_name: pair.tsig_secret})
    out: list[Message] = []
    for start in range(0, len(changes), PER_UPDATE):
        update = dns.update.UpdateMessage(
            zone,
            keyring=keyring,
            keyname=dns.name.from_text(pair.tsig_name),
            keyalgorithm=dns.name.from_text(pair.tsig_algorithm),
        )
        for name, text in changes[start : start + PER_UPDATE]:
            rdata = dns.rdtypes.ANY.TXT.TXT(
                dns.rdataclass.IN, dns.rdatatype.TXT, split_strings(text)
            )
            update.replace(name, 60, rdata)
        out.append(update)
    return out


def send(pair: BindPair, messages: Sequence[Message]) -> None:
    """Each UPDATE over TCP to the primary, one after another."""
    for update in messages:
        response = dns.query.tcp(update, pair.primary, port=pair.port, timeout=10)
        if response.rcode() != 0:
            raise SystemExit(f"the UPDATE was refused: rcode {response.rcode()}")


def _query(name: str) -> bytes:
    q = dns.message.make_query(name, dns.rdatatype.TXT, use_edns=0, payload=1232)
    q.flags &= ~dns.flags.RD
    return q.to_wire()


def _rdata(text: str) -> bytes:
    """The TXT RDATA of `text` on the wire: found in an answer, it is the record."""
    return b"".join(bytes([len(s)]) + s for s in split_strings(text))


class _Server:
    """One UDP socket to one server; queries matched to answers by id. An answer counts if
    it is authoritative, NOERROR, has one RR in its answer section and carries the wanted
    RDATA (a byte search: the cheapest exact check, so that the limit is the servers').
    Given a zone's serial, the server is first asked for the zone's SOA every AGAIN_S and
    for the names only once it serves that serial: asking a secondary for 1,000 names
    every few milliseconds while it transfers the zone would slow the transfer."""

    gate: tuple[str, int] | None = None  # (zone, serial) to wait for

    def __init__(self, address: tuple[str, int], want: dict[str, str]) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.connect(address)
        self.ready: deque[str] = deque(want)
        self.later: list[tuple[float, str]] = []  # (not before, name), a heap
        self.flight: dict[int, tuple[float, str]] = {}  # id -> (sent at, name)
        self.rdata = {name: _rdata(text) for name, text in want.items()}
        self.queries = {name: _query(name) for name in want}  # made before the clock runs
        self.left = len(want)
        self.next_id = 1 + secrets.randbelow(65535)
        self.scanned = 0.0  # when flight was last looked at for lost queries
        self.polled = 0.0  # when the SOA was last asked

    def send(self, now: float, limit: Limit) -> None:
        if self.gate is not None:
            if now - self.polled > AGAIN_S:
                self.polled = now
                soa = dns.message.make_query(self.gate[0], dns.rdatatype.SOA)
                soa.flags &= ~dns.flags.RD
                soa.id = 0
                self.sock.send(soa.to_wire())
                limit.queries += 1
            return
        if now - self.scanned > RESEND_S / 2:
            self.scanned = now
            for qid, (sent, name) in list(self.flight.items()):
                if now - sent > RESEND_S:  # lost: ask again under a new id
                    del self.flight[qid]
                    self.ready.append(name)
        while self.later and self.later[0][0] <= now:
            self.ready.append(heapq.heappop(self.later)[1])
        while self.ready and len(self.flight) < IN_FLIGHT:
            name = self.ready.popleft()
            self.next_id = self.next_id % 65535 + 1  # 0 is the SOA query's
            self.sock.send(struct.pack("!H", self.next_id) + self.queries[name][2:])
            self.flight[self.next_id] = (now, name)
            limit.queries += 1

    def receive(self, now: float, limit: Limit) -> None:
        while True:
            try:
                data = self.sock.recv(65535)
            except BlockingIOError:
                return
            qid, flags, _, ancount = struct.unpack_from("!HHHH", data)
            if qid == 0 and self.gate is not None:
                serials = [rr[0].serial for rr in dns.message.from_wire(data).answer]
                if serials and serials[0] >= self.gate[1]:
                    self.gate = None
                continue
            if qid not in self.flight:
                continue
            _, name = self.flight.pop(qid)
            if flags & 0x0200:  # TC: not expected with EDNS0, counted if it happens
                limit.truncated += 1
                q = dns.message.make_query(name, dns.rdatatype.TXT)
                q.flags &= ~dns.flags.RD
                r = dns.query.tcp(q, self.address[0], port=self.address[1], timeout=5)
                data, flags, ancount = r.to_wire(), r.flags, len(r.answer)
            if flags & 0x040F == 0x0400 and ancount == 1 and self.rdata[name] in data:
                self.left -= 1
            else:  # not there yet (the secondary's IXFR): ask again shortly
                heapq.heappush(self.later, (now + AGAIN_S, name))


def check_all(servers: Sequence[_Server], limit: Limit, t0: float) -> None:
    """Until every server serves exactly the wanted text at every name."""
    sel = selectors.DefaultSelector()
    for s in servers:
        sel.register(s.sock, selectors.EVENT_READ, s)
    deadline = time.monotonic() + 120
    try:
        while any(s.left for s in servers):
            now = time.monotonic()
            if now > deadline:
                raise SystemExit("the nameservers did not serve every record in 120 s")
            for s in servers:
                if s.left:
                    s.send(now, limit)
            for key, _ in sel.select(timeout=AGAIN_S / 2):
                server: _Server = key.data
                server.receive(time.monotonic(), limit)
                where = "{}:{}".format(*server.address)
                if not server.left and where not in limit.served_s:
                    limit.served_s[where] = time.perf_counter() - t0
    finally:
        sel.close()
        for s in servers:
            s.sock.close()


def measure(pair: BindPair, zone: str, changes: Sequence[tuple[str, str]]) -> Limit:
    """The time from the first UPDATE until every change is served by both servers (the
    messages and queries are made before the clock starts: the limit is the servers')."""
    limit = Limit(updates=len(messages := updates(pair, zone, changes)))
    servers = [_Server(address, dict(changes)) for address in pair.addresses]
    t0 = time.perf_counter()
    send(pair, messages)
    limit.sent_s = time.perf_counter() - t0
    serial = pair.serial("primary", zone)
    assert serial is not None, "the primary did not answer its SOA"
    servers[1].gate = (zone, serial)  # the secondary: once it has the last change
    check_all(servers, limit, t0)
    limit.total_s = time.perf_counter() - t0
    return limit


def onboarding(pair: BindPair, zone: str, n: int) -> Limit:
    """n new RSA-2048 records: what onboarding n domains asks of the nameservers."""
    return measure(pair, zone, [(f"l{i}.myesp._domainkey.{zone}.", rsa_record()) for i in range(n)])


def emergency(pair: BindPair, zone: str, n: int) -> Limit:
    """n records revoked to `p=` and n new RSA-2048 records beside them: what an emergency
    over n keys asks of the nameservers (the n old records are put there first, not timed)."""
    old = [(f"e{i}.myesp._domainkey.{zone}.", rsa_record()) for i in range(n)]
    measure(pair, zone, old)
    changes = [(name, REVOKED) for name, _ in old]
    changes += [(f"r{i}.myesp._domainkey.{zone}.", rsa_record()) for i in range(n)]
    return measure(pair, zone, changes)


def describe(limit: Limit) -> str:
    served = ", ".join(f"{a} {s:.2f}s" for a, s in limit.served_s.items())
    return (
        f"{limit.updates} UPDATEs accepted in {limit.sent_s:.2f}s; every record served by "
        f"{served}; {limit.queries} queries, {limit.truncated} truncated"
    )
