"""UPDATE packing: thousands of changes split into messages that all fit the DNS limit
(compression pointers cannot reach past 16 KiB, so an estimate that counts on compression
overflows: this once produced 'The DNS message is too big' for 1,000 ed25519 keys)."""

from __future__ import annotations

import base64

import dns.exception
import dns.name
import pytest

from rotator.adapters.dns.rfc2136 import Rfc2136Publisher
from rotator.adapters.dns.wire import record_name
from rotator.ports import RecordChange

RSA_P = base64.b64encode(b"\1" * 294).decode()


@pytest.mark.parametrize(
    "text",
    ["v=DKIM1; k=ed25519; p=" + "A" * 44, f"v=DKIM1; k=rsa; p={RSA_P}", "v=DKIM1; p=", None],
)
def test_every_message_fits_and_nothing_is_lost(text: str | None) -> None:
    pub = Rfc2136Publisher("127.0.0.1", 53, "k", base64.b64encode(b"x" * 32).decode())
    changes = [RecordChange(f"s1.myesp._domainkey.d{i}.bench.test.", 60, text) for i in range(3000)]
    messages = list(pub._messages("bench.test", changes))
    assert len(messages) > 1
    assert all(len(m.to_wire()) <= 65535 for m in messages)
    owners = {rrset.name.to_text() for m in messages for rrset in m.update}
    assert owners == {c.name for c in changes}


@pytest.mark.parametrize(
    "text",
    [
        "s1.myesp._domainkey.Example.COM.",
        "a.b.",
        "x.",
        ".",
        "relative.name",
        "esc\\.aped.example.",
        "\\065bc.example.",
        "ünï.example.",
    ],
)
def test_a_record_name_is_what_dnspython_reads(text: str) -> None:
    name = record_name(text)
    assert name == dns.name.from_text(text)
    assert name.to_wire() == dns.name.from_text(text).to_wire()


@pytest.mark.parametrize("text", ["a..example.", "x" * 64 + ".example.", ("a" * 63 + ".") * 5])
def test_a_bad_record_name_is_refused_as_dnspython_refuses_it(text: str) -> None:
    with pytest.raises(dns.exception.DNSException):
        dns.name.from_text(text)
    with pytest.raises(dns.exception.DNSException):
        record_name(text)
