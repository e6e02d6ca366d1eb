"""A TXT (or SOA) query with EDNS0 and its answer on the wire, for the probe's pipelined
queries.

dnspython's general message parser costs 0.3-1 ms per answer here, and verifying 1,000 keys
on two servers reads 2,000 answers: this reads only what a verifier needs (the rcode, AA,
TC, the TXT RRs at the asked name, an SOA's serial) in tens of microseconds. A datagram
that is not the answer to the query (another id, not a response, another question) is
None: the caller keeps waiting for the real one. A malformed answer raises Malformed."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import dns.name

TXT = 16
SOA = 6
IN = 1
OPT = 41
# EDNS0 payload of DNS Flag Day 2020: fits an RSA-2048 answer (~500 octets; 498 with BIND's
# authority and glue) and an RSA-4096 one, where plain DNS (512) truncates the first.
PAYLOAD = 1232
_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")  # type, class, ttl, rdlength
_QR, _AA, _TC = 0x8000, 0x0400, 0x0200
# rcodes a server may answer with no question section (it could not read ours)
_NO_QUESTION_OK = frozenset({1, 2, 4, 5})  # FORMERR, SERVFAIL, NOTIMP, REFUSED


class Malformed(ValueError):
    """The datagram claims to answer the query but cannot be read."""


@dataclass(frozen=True)
class Answer:
    rcode: int  # with the EDNS extended bits
    authoritative: bool
    truncated: bool
    texts: tuple[str, ...]  # one per TXT RR at the name, its strings concatenated
    serial: int | None = None  # of the SOA RR at the name, asked for SOA


def query(qname: bytes, qid: int, qtype: int = TXT) -> bytes:
    """A query for `qname` (wire form, absolute), RD=0, with an OPT RR (DO off)."""
    return (
        _HEADER.pack(qid, 0, 1, 0, 0, 1)
        + qname
        + struct.pack("!HH", qtype, IN)
        + b"\x00"  # OPT: the root name
        + _RR.pack(OPT, PAYLOAD, 0, 0)
    )


def record_name(text: str) -> dns.name.Name:
    """The Name of a record's owner. A plain absolute ASCII name (no escapes) is split at
    its dots; dnspython's from_text reads it character by character, which was a third of
    building a 1,000-record UPDATE. Either way the labels are checked (empty, too long)."""
    if text.endswith(".") and text != "." and text.isascii() and "\\" not in text:
        return dns.name.Name([label.encode() for label in text.split(".")])
    return dns.name.from_text(text)


def _skip(wire: bytes, offset: int) -> int:
    """The offset after the name at `offset` (an RR's owner that is not read)."""
    while True:
        if offset >= len(wire):
            raise Malformed("a name runs past the end")
        length = wire[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(wire):
                raise Malformed("a bad compression pointer")
            return offset + 2
        if length & 0xC0:
            raise Malformed("an unknown label type")
        offset += 1 + length
        if length == 0:
            return offset


def _name(wire: bytes, offset: int) -> tuple[bytes, int]:
    """The name at `offset` in lower-case wire form, and the offset after it (after the
    first pointer if compressed)."""
    labels: list[bytes] = []
    end = -1
    hops = 0
    while True:
        if offset >= len(wire):
            raise Malformed("a name runs past the end")
        length = wire[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(wire) or hops > 64:
                raise Malformed("a bad compression pointer")
            if end < 0:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | wire[offset + 1]
            hops += 1
            continue
        if length & 0xC0:
            raise Malformed("an unknown label type")
        if length == 0:
            return b"".join(labels) + b"\x00", end if end >= 0 else offset + 1
        label = wire[offset : offset + 1 + length]
        if len(label) != 1 + length:
            raise Malformed("a label runs past the end")
        labels.append(label.lower())
        offset += 1 + length


def _strings(rdata: bytes) -> str:
    parts = []
    i = 0
    while i < len(rdata):
        n = rdata[i]
        part = rdata[i + 1 : i + 1 + n]
        if len(part) != n:
            raise Malformed("a TXT character-string runs past its RR")
        parts.append(part)
        i += 1 + n
    return b"".join(parts).decode("ascii", "replace")


def _serial(wire: bytes, offset: int, end: int) -> int:
    """The serial of the SOA RDATA at `offset` (MNAME and RNAME, then five numbers)."""
    _, offset = _name(wire, offset)
    _, offset = _name(wire, offset)
    if offset + 20 != end:
        raise Malformed("an SOA RR of the wrong length")
    return int.from_bytes(wire[offset : offset + 4], "big")


def read(wire: bytes, qid: int, qname: bytes, qtype: int = TXT) -> Answer | None:
    """The answer to query(qname, qid, qtype) in `wire`, or None if `wire` is not that
    answer."""
    if len(wire) < _HEADER.size:
        return None
    rid, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(wire)
    if rid != qid or not flags & _QR or flags & 0x7800:  # not a response to a QUERY
        return None
    rcode = flags & 0xF
    offset = _HEADER.size
    if qdcount > 1 or (qdcount == 0 and rcode not in _NO_QUESTION_OK):
        return None
    qname = qname.lower()
    if qdcount == 1:
        # the question as sent comes back as is (a length octet is never changed by lower)
        end = offset + len(qname)
        if wire[offset:end].lower() == qname:
            offset = end
        else:
            name, offset = _name(wire, offset)
            if name != qname:
                return None
        if wire[offset : offset + 4] != struct.pack("!HH", qtype, IN):
            return None
        offset += 4
    if flags & _TC:  # asked again over TCP: what a truncated answer holds is not read
        return Answer(rcode, bool(flags & _AA), True, ())
    texts: list[str] = []
    serial = None
    for index in range(ancount + nscount + arcount):
        if index >= ancount:  # authority and additional: only an OPT's type is read
            owner, offset = b"", _skip(wire, offset)
        elif qdcount == 1 and wire[offset : offset + 2] == b"\xc0\x0c":
            owner, offset = qname, offset + 2  # a pointer to the question's name
        else:
            owner, offset = _name(wire, offset)
        if offset + _RR.size > len(wire):
            raise Malformed("an RR runs past the end")
        rtype, rclass, ttl, rdlength = _RR.unpack_from(wire, offset)
        offset += _RR.size
        rdata = wire[offset : offset + rdlength]
        if len(rdata) != rdlength:
            raise Malformed("an RR's data runs past the end")
        start, offset = offset, offset + rdlength
        if index < ancount and rclass == IN and owner == qname and rtype == qtype:
            if rtype == TXT:
                texts.append(_strings(rdata))
            elif rtype == SOA:  # its names may point anywhere in the message
                serial = _serial(wire, start, offset)
        elif index >= ancount + nscount and rtype == OPT:
            rcode |= (ttl >> 24) << 4  # the extended rcode's upper 8 bits
    return Answer(rcode, bool(flags & _AA), bool(flags & _TC), tuple(texts), serial)
