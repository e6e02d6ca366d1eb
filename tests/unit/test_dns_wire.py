"""The probe's own reading of TXT answers agrees with dnspython's on every answer a server
may send, and its queries are what a server expects: EDNS0 (payload 1232, DO off), RD=0."""

from __future__ import annotations

import struct

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rotator.adapters.dns import wire
from rotator.adapters.dns.pipeline import rcode_text

NAME = "s1.myesp._domainkey.example.test."
QNAME = dns.name.from_text(NAME).to_wire() or b""
RSA_TEXT = "v=DKIM1; k=rsa; p=" + "A" * 392  # the size of an RSA-2048 record


def response(
    rcode: int = 0,
    aa: bool = True,
    answer: list[dns.rrset.RRset] | None = None,
    authority: list[dns.rrset.RRset] | None = None,
    qid: int = 4321,
    edns: bool = True,
) -> dns.message.Message:
    query = dns.message.make_query(NAME, dns.rdatatype.TXT, use_edns=0 if edns else None)
    query.id = qid
    r = dns.message.make_response(query)
    r.set_rcode(dns.rcode.Rcode.make(rcode))
    if aa:
        r.flags |= dns.flags.AA
    r.answer = answer or []
    r.authority = authority or []
    return r


def txt(owner: str, *records: list[str]) -> dns.rrset.RRset:
    return dns.rrset.from_text(
        owner, 300, "IN", "TXT", *(" ".join(f'"{s}"' for s in strings) for strings in records)
    )


SOA = dns.rrset.from_text("example.test.", 60, "IN", "SOA", "ns1. h. 1 2 3 4 5")
non_ascii = dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, [b"caf\xc3\xa9"])


def dnspython_reads(data: bytes) -> wire.Answer:
    """What the probe read with dnspython before (the reference)."""
    r = dns.message.from_wire(data)
    qname = dns.name.from_text(NAME)
    texts = tuple(
        b"".join(rd.strings).decode("ascii", "replace")
        for rrset in r.answer
        if rrset.name == qname and rrset.rdtype == dns.rdatatype.TXT
        for rd in rrset
    )
    return wire.Answer(r.rcode(), bool(r.flags & dns.flags.AA), bool(r.flags & dns.flags.TC), texts)


def test_the_query_asks_for_txt_with_edns0_and_no_recursion() -> None:
    q = dns.message.from_wire(wire.query(QNAME, 777))
    assert q.id == 777 and not q.flags & dns.flags.RD and not q.flags & dns.flags.QR
    assert q.question[0].name == dns.name.from_text(NAME)
    assert q.question[0].rdtype == dns.rdatatype.TXT
    assert q.edns == 0 and q.payload == wire.PAYLOAD and not q.ednsflags & dns.flags.DO


@pytest.mark.parametrize(
    "message",
    [
        response(answer=[txt(NAME, [RSA_TEXT[:255], RSA_TEXT[255:]])]),
        response(answer=[txt(NAME.upper(), ["v=DKIM1; p="])]),  # names compare without case
        response(answer=[txt(NAME, ["a"], ["b", "c"])]),  # two RRs: both are seen
        response(answer=[txt("other.example.test.", ["x"])]),  # not at the name
        response(
            answer=[
                dns.rrset.from_text(NAME, 300, "IN", "CNAME", "t.example.test."),
                txt("t.example.test.", ["v=DKIM1; p=abc"]),
            ]
        ),
        response(rcode=dns.rcode.NXDOMAIN, authority=[SOA]),
        response(aa=False),
        response(rcode=dns.rcode.REFUSED, aa=False, edns=False),
        response(rcode=dns.rcode.BADVERS),  # extended rcode bits in the OPT RR
        response(answer=[dns.rrset.from_rdata(NAME, 300, non_ascii)]),
    ],
)
def test_answers_are_read_as_dnspython_reads_them(message: dns.message.Message) -> None:
    data = message.to_wire()
    assert wire.read(data, 4321, QNAME) == dnspython_reads(data)


@settings(max_examples=200, deadline=None)
@given(
    records=st.lists(
        st.lists(
            st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=255),
            min_size=1,
        ),
        max_size=4,
    ),
    upper=st.booleans(),
    rcode=st.sampled_from([0, 2, 3, 5]),
    aa=st.booleans(),
)
def test_any_txt_answer_is_read_as_dnspython_reads_it(
    records: list[list[str]], upper: bool, rcode: int, aa: bool
) -> None:
    strings = [[s.replace("\\", "\\\\").replace('"', '\\"') for s in r] for r in records]
    answer = [txt(NAME.upper() if upper else NAME, *strings)] if strings else []
    data = response(rcode, aa, answer).to_wire()
    assert wire.read(data, 4321, QNAME) == dnspython_reads(data)


def test_names_are_read_whatever_their_case_and_compression() -> None:
    """The question echoed in another case, owners as pointers to it or written out in
    full, and names in the authority section: read as dnspython reads them."""
    rr = struct.pack("!HHIH", wire.TXT, wire.IN, 60, 4) + b"\x03abc"
    rr2 = rr[:-3] + b"xyz"
    upper = dns.name.from_text(NAME.upper()).to_wire() or b""
    question = struct.pack("!HH", wire.TXT, wire.IN)
    for asked, owner in ((upper, b"\xc0\x0c"), (QNAME, upper), (upper, QNAME)):
        header = struct.pack("!HHHHHH", 4321, 0x8400, 1, 2, 1, 0)
        data = header + asked + question + owner + rr + owner + rr2 + b"\x00" + rr
        assert wire.read(data, 4321, QNAME) == dnspython_reads(data)
        assert wire.read(data, 4321, QNAME) == wire.Answer(0, True, False, ("abc", "xyz"))


def test_truncated_answers_are_flagged_not_read() -> None:
    r = response()
    r.flags |= dns.flags.TC
    assert wire.read(r.to_wire(), 4321, QNAME) == wire.Answer(0, True, True, ())


def test_a_datagram_that_is_not_the_answer_is_none() -> None:
    good = response(answer=[txt(NAME, ["v=DKIM1; p="])])
    assert wire.read(good.to_wire(), 1, QNAME) is None  # another id
    assert wire.read(wire.query(QNAME, 4321), 4321, QNAME) is None  # a query, not an answer
    other = dns.name.from_text("s2.myesp._domainkey.example.test.").to_wire() or b""
    assert wire.read(good.to_wire(), 4321, other) is None  # another question
    assert wire.read(b"\x10\xe1", 4321, QNAME) is None
    # a server that could not read the question may leave it out of its error
    refused = response(rcode=dns.rcode.FORMERR)
    refused.question = []
    assert wire.read(refused.to_wire(), 4321, QNAME) == wire.Answer(1, True, False, ())


def test_malformed_answers_raise() -> None:
    data = response(answer=[txt(NAME, ["v=DKIM1; p=abc"])]).to_wire()
    with pytest.raises(wire.Malformed):
        wire.read(data[:-5], 4321, QNAME)  # cut inside an RR
    question = wire.query(QNAME, 4321)[12 : 12 + len(QNAME) + 4]
    at = 12 + len(question)  # an answer whose owner name points at itself
    looping = struct.pack("!HHHHHH", 4321, 0x8400, 1, 1, 0, 0) + question
    with pytest.raises(wire.Malformed):
        wire.read(looping + struct.pack("!H", 0xC000 | at) + bytes(10), 4321, QNAME)
    with pytest.raises(wire.Malformed):  # a TXT character-string longer than its RR
        rr = b"\xc0\x0c" + struct.pack("!HHIH", wire.TXT, wire.IN, 60, 3) + b"\x05abc"
        wire.read(looping + rr, 4321, QNAME)


ZONE_WIRE = dns.name.from_text("example.test.").to_wire() or b""


def soa_response(serial: int, answer: bool = True, qid: int = 4321) -> bytes:
    query = dns.message.make_query("example.test.", dns.rdatatype.SOA, use_edns=0)
    query.id = qid
    r = dns.message.make_response(query)
    r.flags |= dns.flags.AA
    rrset = dns.rrset.from_text(
        "example.test.",
        60,
        "IN",
        "SOA",
        f"ns1.example.test. hostmaster.example.test. {serial} 2 3 4 5",
    )
    if answer:
        r.answer = [rrset]
    else:
        r.authority = [rrset]
    return r.to_wire()  # dnspython compresses the SOA's names against the question


def test_an_soa_query_asks_for_the_zone_soa() -> None:
    q = dns.message.from_wire(wire.query(ZONE_WIRE, 9, wire.SOA))
    assert q.question[0].name == dns.name.from_text("example.test.")
    assert q.question[0].rdtype == dns.rdatatype.SOA and not q.flags & dns.flags.RD


@pytest.mark.parametrize("serial", [0, 1, 2026120701, 2**32 - 1])
def test_the_serial_of_an_soa_answer_is_read(serial: int) -> None:
    data = soa_response(serial)
    assert dns.message.from_wire(data).answer[0][0].serial == serial  # the reference
    assert wire.read(data, 4321, ZONE_WIRE, wire.SOA) == wire.Answer(0, True, False, (), serial)


def test_an_soa_only_in_the_authority_section_or_of_a_txt_answer_is_no_serial() -> None:
    only_authority = wire.read(soa_response(7, answer=False), 4321, ZONE_WIRE, wire.SOA)
    assert only_authority == wire.Answer(0, True, False, (), None)
    # a TXT query's negative answer carries the SOA in its authority section: not read
    nx = response(rcode=dns.rcode.NXDOMAIN, authority=[SOA]).to_wire()
    assert wire.read(nx, 4321, QNAME) == wire.Answer(3, True, False, ())
    # the answer to an SOA query is not the answer to a TXT query of the same name
    assert wire.read(soa_response(7), 4321, ZONE_WIRE) is None


def test_an_soa_of_the_wrong_length_is_malformed() -> None:
    question = wire.query(ZONE_WIRE, 4321, wire.SOA)[12 : 12 + len(ZONE_WIRE) + 4]
    head = struct.pack("!HHHHHH", 4321, 0x8400, 1, 1, 0, 0) + question
    for numbers in (16, 24):  # an SOA holds two names and five 32-bit numbers: 20 octets
        rdata = b"\x00\x00" + bytes(numbers)
        rr = b"\xc0\x0c" + struct.pack("!HHIH", wire.SOA, wire.IN, 60, len(rdata)) + rdata
        with pytest.raises(wire.Malformed, match="SOA"):
            wire.read(head + rr, 4321, ZONE_WIRE, wire.SOA)
    rdata = b"\x00\x00" + bytes(20)
    rr = b"\xc0\x0c" + struct.pack("!HHIH", wire.SOA, wire.IN, 60, len(rdata)) + rdata
    assert wire.read(head + rr, 4321, ZONE_WIRE, wire.SOA) == wire.Answer(0, True, False, (), 0)


@pytest.mark.parametrize("rcode", [0, 2, 3, 5, 16, 3000])
def test_an_rcode_reads_as_dnspython_says(rcode: int) -> None:
    assert rcode_text(rcode) == dns.rcode.Rcode.to_text(rcode)
