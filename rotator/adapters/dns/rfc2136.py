"""RFC 2136 dynamic UPDATE with TSIG over TCP (dnspython). All the publisher's DNS traffic
lives in this one small class; every failure becomes a one-line PublishError reason."""

from __future__ import annotations

import binascii
import socket
import time
from collections.abc import Iterator, Sequence

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.tsig
import dns.tsigkeyring
import dns.update

from ...domain.errors import PublishError
from ...domain.reasons import Reason
from ...domain.record import split_strings
from ...ports import RecordChange
from .fanout import PerZone
from .wire import record_name


class Rfc2136Publisher(PerZone):
    """The default backend ([dns] primary): UPDATEs with TSIG to BIND, Knot, or any server
    that takes them."""

    def __init__(
        self,
        server: str,
        port: int,
        tsig_name: str,
        tsig_secret: str,
        tsig_algorithm: str = "hmac-sha256",
        timeout: float = 5.0,
        max_message: int = 60000,
    ) -> None:
        self.server = server
        self.port = port
        self.timeout = timeout
        self.max_message = max_message
        try:
            self.keyring = dns.tsigkeyring.from_text({tsig_name: tsig_secret})
            self.key_name = dns.name.from_text(tsig_name)
            self.algorithm = dns.name.from_text(tsig_algorithm)
        except (binascii.Error, ValueError, dns.exception.DNSException) as exc:
            raise PublishError(f"TSIG key {tsig_name!r} is invalid: {exc}") from None
        # Fail here, not in the first apply(): dnspython raises KeyError when signing with
        # an unknown algorithm, which callers (catching ExternalError) would not expect.
        try:
            probe = dns.message.make_query(self.key_name, dns.rdatatype.SOA)
            probe.use_tsig(self.keyring, self.key_name, algorithm=self.algorithm)
            probe.to_wire()
        except (NotImplementedError, KeyError):
            raise PublishError(
                f"TSIG algorithm {tsig_algorithm!r} is not supported (use e.g. hmac-sha256)"
            ) from None
        self.last_message_count = 0

    def in_rounds(self, zone: str) -> bool:
        return True  # an UPDATE per 60,000 octets, each its own change of the zone

    @property
    def where(self) -> str:
        host = f"[{self.server}]" if ":" in self.server else self.server
        return f"{host}:{self.port}"

    def apply(self, zone: str, changes: Sequence[RecordChange]) -> str:
        """Each UPDATE sent once the one before was answered (so they apply in order),
        and made and signed while the server applies the one before."""
        messages = self._messages(zone, changes)
        self.last_message_count = 0
        sent: tuple[socket.socket, dns.update.UpdateMessage] | None = None
        try:
            for update in messages:
                wire = update.to_wire()
                if sent is not None:
                    self._answer(zone, *sent)
                    sent = None
                sent = (self._send(zone, wire), update)
                self.last_message_count += 1
            if sent is not None:
                self._answer(zone, *sent)
                sent = None
        finally:
            if sent is not None:
                sent[0].close()
        return self.where

    def zone_problem(self, zone: str) -> str | None:
        name = dns.name.from_text(zone)
        query = dns.message.make_query(name, dns.rdatatype.SOA)
        query.flags &= ~dns.flags.RD
        try:
            response = dns.query.tcp(query, self.server, port=self.port, timeout=self.timeout)
        except (OSError, EOFError, dns.exception.DNSException) as exc:
            raise PublishError(
                f"the primary {self.where} did not answer a SOA query for {zone}: {exc}",
                Reason.DNS_TIMEOUT,
            ) from None
        rcode = response.rcode()
        fix = "add the zone there, or give it to another [[dns.backends]] entry"
        if rcode != dns.rcode.NOERROR:
            said = dns.rcode.to_text(rcode)
            return f"the primary {self.where} answers {said} for zone {zone}: {fix}"
        soa = [r for r in response.answer if r.rdtype == dns.rdatatype.SOA and r.name == name]
        if not soa or not response.flags & dns.flags.AA:
            return f"the primary {self.where} is not authoritative for zone {zone}: {fix}"
        return None

    def _new(self, zone: str) -> dns.update.UpdateMessage:
        return dns.update.UpdateMessage(
            zone, keyring=self.keyring, keyname=self.key_name, keyalgorithm=self.algorithm
        )

    def _messages(
        self, zone: str, changes: Sequence[RecordChange]
    ) -> Iterator[dns.update.UpdateMessage]:
        """Pack changes into as few UPDATEs as fit max_message octets (TSIG included).
        Each change is costed without name compression (compression pointers cannot
        reach past 16 KiB into a message, so big messages compress less), which keeps
        the packing linear and never over the limit. Every change is checked before the
        first message is made; the messages are then made one at a time, as sent."""
        try:
            base = len(self._new(zone).to_wire())
        except dns.exception.DNSException as exc:
            raise PublishError(f"invalid zone name {zone!r}: {exc}") from None
        groups: list[list[tuple[dns.name.Name, RecordChange]]] = []
        size = self.max_message
        for change in changes:
            # bad input (malformed name, non-ASCII text) is a PublishError, not a crash
            try:
                name = record_name(change.name)
                cost = _uncompressed_cost(name, change)
            except (dns.exception.DNSException, ValueError) as exc:
                raise PublishError(
                    f"invalid record {change.name!r} for zone {zone}: {exc}"
                ) from None
            if not groups or size + cost > self.max_message:
                groups.append([])
                size = base
            groups[-1].append((name, change))
            size += cost
        return (self._message(zone, group) for group in groups)

    def _message(
        self, zone: str, group: list[tuple[dns.name.Name, RecordChange]]
    ) -> dns.update.UpdateMessage:
        update = self._new(zone)
        for name, change in group:
            self._add(update, name, change)
        return update

    @staticmethod
    def _add(update: dns.update.UpdateMessage, name: dns.name.Name, change: RecordChange) -> None:
        if change.text is None:
            update.delete(name, dns.rdatatype.TXT)
            return
        rdata = dns.rdtypes.ANY.TXT.TXT(
            dns.rdataclass.IN, dns.rdatatype.TXT, split_strings(change.text)
        )
        update.replace(name, change.ttl, rdata)

    def _send(self, zone: str, wire: bytes) -> socket.socket:
        """A connection to the primary with the UPDATE `wire` sent on it."""
        try:
            sock = socket.create_connection((self.server, self.port), timeout=self.timeout)
        except ConnectionRefusedError:
            raise PublishError(f"connection refused by {self.where} (is the primary up?)") from None
        except TimeoutError:
            raise self._timeout(zone) from None
        except OSError as exc:
            raise PublishError(f"network error talking to {self.where}: {exc}") from None
        try:
            dns.query.send_tcp(sock, wire, time.time() + self.timeout)
        except BaseException as exc:
            sock.close()
            raise self._failure(zone, exc) from None
        return sock

    def _answer(self, zone: str, sock: socket.socket, update: dns.update.UpdateMessage) -> None:
        """The primary's answer to `update`, sent on `sock` (closed here): PublishError
        unless it applied the update."""
        try:
            with sock:
                response, _ = dns.query.receive_tcp(
                    sock,
                    time.time() + self.timeout,
                    keyring=update.keyring,
                    request_mac=update.mac,
                )
                if not update.is_response(response):
                    raise dns.query.BadResponse
        except Exception as exc:
            raise self._failure(zone, exc) from None
        self._check(zone, response)

    def _timeout(self, zone: str) -> PublishError:
        return PublishError(
            f"timeout after {self.timeout:g}s sending UPDATE to {self.where} for zone {zone}",
            Reason.DNS_TIMEOUT,
        )

    def _failure(self, zone: str, exc: BaseException) -> PublishError:
        """What went wrong sending an UPDATE or reading its answer, as one line."""
        if isinstance(exc, dns.tsig.PeerBadKey):
            return PublishError(
                f"TSIG BADKEY from {self.where} for zone {zone}: the server does not know key "
                f"{self.key_name.to_text(omit_final_dot=True)} (check dns.tsig_name)",
                Reason.DNS_TSIG,
            )
        if isinstance(exc, (dns.tsig.PeerBadSignature, dns.tsig.BadSignature)):
            return PublishError(
                f"TSIG BADSIG from {self.where} for zone {zone}: check dns.tsig_secret",
                Reason.DNS_TSIG,
            )
        if isinstance(exc, (dns.tsig.PeerBadTime, dns.tsig.PeerBadTruncation)):
            return PublishError(
                f"TSIG {type(exc).__name__} from {self.where} for zone {zone}: check clocks",
                Reason.DNS_TSIG,
            )
        if isinstance(exc, (dns.exception.Timeout, TimeoutError)):
            return self._timeout(zone)
        if isinstance(exc, (OSError, EOFError)):
            return PublishError(f"network error talking to {self.where}: {exc}")
        if isinstance(exc, dns.exception.DNSException):
            return PublishError(f"bad answer from {self.where} for zone {zone}: {exc}")
        raise exc

    def _check(self, zone: str, response: dns.message.Message) -> None:
        rcode = response.rcode()
        if rcode != dns.rcode.NOERROR:
            hint = {
                dns.rcode.REFUSED: "the server refused: is the zone on it and the key allowed?",
                dns.rcode.NOTAUTH: "the server is not authoritative for the zone, or TSIG failed",
                dns.rcode.NOTZONE: "a record name is outside the zone",
                dns.rcode.SERVFAIL: "the server failed to apply the update",
            }.get(rcode, "")
            raise PublishError(
                f"{dns.rcode.to_text(rcode)} from {self.where} for zone {zone}"
                + (f" ({hint})" if hint else ""),
                _RCODES.get(rcode),
            )


_RCODES = {dns.rcode.REFUSED: Reason.DNS_REFUSED, dns.rcode.NOTAUTH: Reason.DNS_NOTAUTH}


def _uncompressed_cost(name: dns.name.Name, change: RecordChange) -> int:
    """Octets a change adds to an UPDATE: a delete RR (owner + 10 fixed octets) and, for
    a replace, the new RR with its character-strings (each 1 length octet + data)."""
    owner = sum(len(label) + 1 for label in name.labels)
    cost = owner + 10
    if change.text is not None:
        cost += owner + 10 + sum(1 + len(c) for c in split_strings(change.text))
    return cost
