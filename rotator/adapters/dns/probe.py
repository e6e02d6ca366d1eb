"""Direct queries to every address of every authoritative nameserver of a zone (the
skeleton of octoDNS's report command): RD=0, UDP with EDNS0, TCP only for an answer that
is truly truncated; many records at once through one pipeline (pipeline.py).

Every call has an overall deadline (the caller's, or OVERALL timeouts from its start), and
each query is given only the time left before it: a customer's slow DNS (answers just
under the timeout, to each of a dozen lookups) cannot make one call last for minutes."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver

from ...config.values import hostport
from ...domain.errors import ProbeError
from ...ports import DelegationView, Observation
from . import wire
from .pipeline import Ask, ask_all

T = TypeVar("T")
V = TypeVar("V")

TARGET_CACHE_S = 5.0  # NS lists, NS host addresses and targets are reused this long
# Caps on what one zone may make us query: a customer's zone with 20 dead NS must not cost
# 20 timeouts (and the checks of one customer run within a deadline, see app/verifying).
MAX_NS = 8
MAX_ADDRESSES = 16
OVERALL = 3  # timeouts one call may take in all when its caller gives no deadline
BATCH = 2048  # queries of an observe_many() without a deadline given one call's bound
MAX_LOOKUPS = 16  # zones whose nameservers are looked up at once


def _fmt(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _at_once(fn: Callable[[T], V], items: Sequence[T], most: int = MAX_ADDRESSES) -> list[V]:
    """fn over the items, `most` at once, on threads of this call's own: dead servers cost
    one timeout together, and a zone with many of them holds no thread another call waits
    for (every fn here is bounded by the call's deadline)."""
    if len(items) < 2:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(most, len(items)), thread_name_prefix="probe") as pool:
        return list(pool.map(fn, items))


class AuthoritativeProbe:
    def __init__(
        self,
        port: int = 53,
        timeout: float = 3.0,
        nameservers: Sequence[str] = (),
        resolver: Sequence[str] = (),
        zone_nameservers: Sequence[tuple[str, Sequence[str]]] = (),
    ) -> None:
        self.port = port
        self.timeout = timeout
        self.fixed = [hostport(n, port) for n in nameservers]
        # a backend's own `nameservers`: (zone suffix, addresses), longest suffix first
        self.by_zone = sorted(
            ((suffix, [hostport(n, port) for n in addrs]) for suffix, addrs in zone_nameservers),
            key=lambda item: -len(item[0]),
        )
        if resolver:
            self.resolver = dns.resolver.Resolver(configure=False)
            hosts = [hostport(r, 53) for r in resolver]
            self.resolver.nameservers = [h for h, _ in hosts]
            self.resolver.nameserver_ports = {h: p for h, p in hosts}
        else:
            self.resolver = dns.resolver.Resolver()
        self.resolver.lifetime = timeout
        self.resolver.timeout = timeout
        # (kind, name) -> (expiry, value): a zone's targets and NS names, a host's addresses
        self._cache: dict[tuple[str, str], tuple[float, list[Any]]] = {}
        self._lock = threading.Lock()

    def _deadline(self, deadline: float | None) -> float:
        return time.monotonic() + OVERALL * self.timeout if deadline is None else deadline

    def _left(self, deadline: float, what: str) -> float:
        """The time one query may take: its timeout, or less if the deadline is nearer."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise ProbeError(f"no time left to {what}")
        return min(self.timeout, left)

    def _hit(self, kind: str, name: str) -> list[Any] | None:
        with self._lock:
            hit = self._cache.get((kind, name))
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def _cached(self, kind: str, name: str, find: Callable[[str], list[T]]) -> list[T]:
        """find(name), reused for TARGET_CACHE_S (failures and empty answers are not)."""
        hit = self._hit(kind, name)
        if hit is not None:
            return hit
        now = time.monotonic()
        found = find(name)
        if found:
            with self._lock:
                self._cache[(kind, name)] = (now + TARGET_CACHE_S, found)
        return found

    def targets(self, zone: str, deadline: float | None = None) -> list[tuple[str, str, int]]:
        """(ns name, address, port) for every address of every NS of the zone. Cached for a
        few seconds: verifying 1,000 keys of one zone needs one NS lookup, not 1,000; and
        1,000 zones served by the same nameservers need their addresses looked up once."""
        fixed = self._fixed(zone)
        if fixed:
            return [(_fmt(h, p), h, p) for h, p in fixed]
        until = self._deadline(deadline)
        return self._cached("targets", zone, lambda z: self._discover(z, until))

    def _fixed(self, zone: str) -> list[tuple[str, int]]:
        zone = zone.rstrip(".").lower()
        for suffix, addresses in self.by_zone:
            if zone == suffix or zone.endswith("." + suffix):
                return addresses
        return self.fixed

    def _ns_hosts(self, zone: str, deadline: float) -> list[str]:
        return self._cached("ns", zone, lambda z: self._lookup_ns(z, deadline))

    def _lookup_ns(self, zone: str, deadline: float) -> list[str]:
        where = ", ".join(str(n) for n in self.resolver.nameservers)
        lifetime = self._left(deadline, f"look up the NS records of zone {zone}")
        try:
            ns_answer = self.resolver.resolve(
                zone, dns.rdatatype.NS, raise_on_no_answer=True, lifetime=lifetime
            )
        except dns.exception.DNSException as exc:
            raise ProbeError(f"no NS records for zone {zone} at resolver {where}: {exc}") from None
        return [rr.target.to_text(omit_final_dot=True) for rr in sorted(ns_answer, key=str)]

    def _addresses(self, host: str, deadline: float) -> list[str]:
        out: list[str] = []
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            lifetime = self._left(deadline, f"resolve nameserver {host}")
            try:
                answer = self.resolver.resolve(
                    host, rdtype, raise_on_no_answer=False, lifetime=lifetime
                )
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            except dns.exception.DNSException as exc:
                raise ProbeError(f"cannot resolve nameserver {host}: {exc}") from None
            out += [addr.to_text() for addr in answer]
        return out

    def _discover(self, zone: str, deadline: float) -> list[tuple[str, str, int]]:
        out: list[tuple[str, str, int]] = []
        for host in self._ns_hosts(zone, deadline)[:MAX_NS]:
            addresses = self._cached("addresses", host, lambda h: self._addresses(h, deadline))
            if not addresses:
                raise ProbeError(f"nameserver {host} of zone {zone} has no A or AAAA address")
            out += [(host, addr, self.port) for addr in addresses]
        return sorted(out)[:MAX_ADDRESSES]

    def observe(self, zone: str, name: str, deadline: float | None = None) -> list[Observation]:
        (result,) = self.observe_many([(zone, name)], deadline)
        if isinstance(result, ProbeError):
            raise result
        return result

    def observe_many(
        self, queries: Sequence[tuple[str, str]], deadline: float | None = None
    ) -> list[list[Observation] | ProbeError]:
        """Every (zone, name) on every address of the zone's servers, all pipelined (see
        pipeline.py). Without a deadline, each zone's nameserver lookup and then each BATCH
        of queries have the bound of one call: a zone whose DNS is slow fails alone."""
        if deadline is not None or len(queries) <= BATCH:
            return self._observe_batch(queries, deadline)
        out: list[list[Observation] | ProbeError] = []
        for start in range(0, len(queries), BATCH):
            out += self._observe_batch(queries[start : start + BATCH], None)
        return out

    def _observe_batch(
        self, queries: Sequence[tuple[str, str]], deadline: float | None, qtype: int = wire.TXT
    ) -> list[list[Observation] | ProbeError]:
        found = self._targets_of({zone for zone, _ in queries}, deadline)
        until = self._deadline(deadline)
        out: list[list[Observation] | ProbeError] = []
        counts: list[int] = []  # the answers each result takes
        asks: list[Ask] = []
        for zone, name in queries:
            targets = found[zone]
            try:  # fail once here, not as a raw dnspython error out of the pipeline
                qname = wire.record_name(name).to_wire() or b""  # (bytes: no file given)
            except dns.exception.DNSException as exc:
                targets = ProbeError(f"invalid name {name!r}: {exc}")
            if isinstance(targets, ProbeError):
                out.append(targets)
                counts.append(0)
                continue
            out.append([])
            counts.append(len(targets))
            asks += [Ask(ns, ip, port, qname, qtype) for ns, ip, port in targets]
        answers = iter(ask_all(asks, self.timeout, until))
        for result, count in zip(out, counts, strict=True):
            if isinstance(result, list):
                result += itertools.islice(answers, count)
        return out

    def serials(
        self, zones: Sequence[str], deadline: float | None = None
    ) -> dict[str, list[int | None]]:
        """Each zone's SOA serial on every address of its nameservers, pipelined (None: no
        serial came back). Servers of one zone at different serials are still passing a
        change on (NOTIFY, then a transfer)."""
        unique = sorted(set(zones))
        found = self._observe_batch([(z, z) for z in unique], deadline, wire.SOA)
        return {
            zone: []
            if isinstance(seen, ProbeError)
            else [o.serial if o.authoritative and o.rcode == "NOERROR" else None for o in seen]
            for zone, seen in zip(unique, found, strict=True)
        }

    def _targets_of(
        self, zones: set[str], deadline: float | None
    ) -> dict[str, list[tuple[str, str, int]] | ProbeError]:
        """Each zone's targets: configured or cached ones at once, the others looked up
        MAX_LOOKUPS zones at a time, each by `deadline` (None: its own bound)."""
        found: dict[str, list[tuple[str, str, int]] | ProbeError] = {}
        unknown = []
        for zone in sorted(zones):
            known = self._fixed(zone)
            if known:
                found[zone] = [(_fmt(h, p), h, p) for h, p in known]
            elif (hit := self._hit("targets", zone)) is not None:
                found[zone] = hit
            else:
                unknown.append(zone)

        def look_up(zone: str) -> list[tuple[str, str, int]] | ProbeError:
            try:
                return self.targets(zone, deadline)
            except ProbeError as exc:
                return exc

        found.update(zip(unknown, _at_once(look_up, unknown, MAX_LOOKUPS), strict=True))
        return found

    def cname(self, name: str, deadline: float | None = None) -> str | None:
        lifetime = self._left(self._deadline(deadline), f"look up the CNAME {name}")
        try:
            answer = self.resolver.resolve(name, dns.rdatatype.CNAME, lifetime=lifetime)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None  # an answer: there is no CNAME
        except dns.exception.DNSException as exc:
            # no answer (timeout, SERVFAIL): not evidence that the customer removed it
            raise ProbeError(f"cannot look up the CNAME {name}: {exc}") from None
        return str(answer[0].target.to_text()).lower()

    # --- NS delegation --------------------------------------------------------------------

    def delegation(self, zone: str, deadline: float | None = None) -> DelegationView:
        zone = zone.rstrip(".").lower()
        if self.fixed:
            return DelegationView(
                zone, error="checking a delegation needs NS discovery: unset dns.nameservers"
            )
        until = self._deadline(deadline)
        try:  # the same lookup as targets(zone): the key's verification reuses it
            served = frozenset(host.lower() for host in self._ns_hosts(zone, until))
        except ProbeError:
            served = frozenset()
        name = dns.name.from_text(zone)
        try:
            lifetime = self._left(until, "find the parent zone")
            parent = dns.resolver.zone_for_name(
                name.parent(), resolver=self.resolver, lifetime=lifetime
            )
        except ProbeError as exc:
            return DelegationView(zone, served=served, error=f"no parent zone found: {exc.reason}")
        except dns.exception.DNSException as exc:
            return DelegationView(zone, served=served, error=f"no parent zone found: {exc}")
        parent_text = parent.to_text(omit_final_dot=True)
        try:
            servers = self.targets(parent_text, until)
        except ProbeError as exc:
            return DelegationView(zone, parent_text, served=served, error=exc.reason)
        referral: set[str] = set()
        answered = 0
        q = dns.message.make_query(name, dns.rdatatype.NS)
        q.flags &= ~dns.flags.RD

        def ask(target: tuple[str, str, int]) -> dns.message.Message | None:
            try:
                wait = self._left(until, f"ask {target[0]}")
                return dns.query.udp(q, target[1], port=target[2], timeout=wait)
            except (OSError, ProbeError, dns.exception.DNSException):
                return None

        # every parent server at once: dead ones cost one timeout together, not each
        for r in _at_once(ask, servers[:MAX_ADDRESSES]):
            if r is None:
                continue
            answered += 1
            for rrset in r.authority + r.answer:
                if rrset.name == name and rrset.rdtype == dns.rdatatype.NS:
                    referral |= {rr.target.to_text(omit_final_dot=True).lower() for rr in rrset}
        if not answered:
            return DelegationView(
                zone,
                parent_text,
                served=served,
                error=f"no server of {parent_text} answered in time",
            )
        return DelegationView(zone, parent_text, frozenset(referral), served)
