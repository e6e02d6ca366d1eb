"""A tiny DNS server on loopback (UDP) that plays every server a delegation check asks (the
resolver, the parent zone's servers), and answers the names of chosen domains late.

Each domain `<d>` (two labels, e.g. acme.example) is its own zone served by `ns.<d>` at
127.0.0.1; `myesp._domainkey.<d>` is delegated to `ns`. Answers under a slow domain leave
after `delay` seconds: a slow customer's DNS, not a dead one."""

from __future__ import annotations

import heapq
import selectors
import socket
import threading
import time
from collections.abc import Collection

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

HOST = "127.0.0.1"


class SlowDns:
    def __init__(self, ns: Collection[str], slow: Collection[str], delay: float = 0.9) -> None:
        self.ns = sorted(ns)  # what each delegation names (the ESP's servers)
        self.slow = {d.lower() for d in slow}
        self.delay = delay
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self.asked: list[tuple[str, str]] = []  # (name, type) of every query, in order
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="slowdns", daemon=True)

    def __enter__(self) -> SlowDns:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        assert not self._thread.is_alive(), "the slow DNS server did not stop"
        self.sock.close()

    def _serve(self) -> None:
        due: list[tuple[float, int, bytes, tuple[str, int]]] = []  # (send at, seq, wire, to)
        seq = 0
        with selectors.DefaultSelector() as sel:
            sel.register(self.sock, selectors.EVENT_READ)
            while not self._stop.is_set():
                wait = 0.05 if not due else max(0.0, min(0.05, due[0][0] - time.monotonic()))
                if sel.select(wait):
                    try:
                        wire, peer = self.sock.recvfrom(4096)
                    except BlockingIOError:
                        continue
                    answer, late = self._answer(wire)
                    if answer is not None:
                        seq += 1
                        at = time.monotonic() + (self.delay if late else 0.0)
                        heapq.heappush(due, (at, seq, answer, peer))
                while due and due[0][0] <= time.monotonic():
                    _, _, answer, peer = heapq.heappop(due)
                    self.sock.sendto(answer, peer)

    def _answer(self, wire: bytes) -> tuple[bytes | None, bool]:
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None, False
        if not query.question:
            return None, False
        q = query.question[0]
        name = q.name.to_text(omit_final_dot=True).lower()
        self.asked.append((name, dns.rdatatype.to_text(q.rdtype)))
        labels = name.split(".")
        apex = ".".join(labels[-2:])
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA

        def add(section: list[dns.rrset.RRset], owner: str, rdtype: str, *values: str) -> None:
            section.append(dns.rrset.from_text(owner + ".", 300, "IN", rdtype, *values))

        soa = (f"ns.{apex}.", f"hostmaster.{apex}. 1 3600 600 86400 300")
        if name == f"myesp._domainkey.{apex}" and q.rdtype == dns.rdatatype.NS:
            add(response.answer, name, "NS", *(f"{n}." for n in self.ns))
        elif name == apex and q.rdtype == dns.rdatatype.NS:
            add(response.answer, name, "NS", f"ns.{apex}.")
        elif name == apex and q.rdtype == dns.rdatatype.SOA:
            add(response.answer, name, "SOA", " ".join(soa))
        elif name == f"ns.{apex}" and q.rdtype == dns.rdatatype.A:
            add(response.answer, name, "A", HOST)
        else:  # NODATA, with the zone's SOA (how a resolver finds the zone of a name)
            add(response.authority, apex, "SOA", " ".join(soa))
        return response.to_wire(), apex in self.slow
