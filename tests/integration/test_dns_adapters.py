"""The DNS adapters against real BIND: RFC 2136 + TSIG publishing (idempotent, batched,
every failure a clear reason) and the authoritative probe (NS discovery, direct queries)."""

from __future__ import annotations

import base64
import secrets
import time
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.tsigkeyring
import dns.update
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from rotator.adapters.dns.pipeline import Pipeline
from rotator.adapters.dns.probe import AuthoritativeProbe
from rotator.adapters.dns.rfc2136 import Rfc2136Publisher
from rotator.demo.localdns import BindPair, free_port
from rotator.domain.errors import ProbeError, PublishError
from rotator.domain.reasons import Reason
from rotator.domain.record import split_strings
from rotator.ports import RecordChange

pytestmark = pytest.mark.integration

ZONE = "example.test"
NAME = "s1.myesp._domainkey.example.test."
# An RSA-2048 record is ~410 octets: it needs two character-strings.
TEXT = "v=DKIM1; k=rsa; p=" + base64.b64encode(secrets.token_bytes(294)).decode()
IN, TXT = dns.rdataclass.IN, dns.rdatatype.TXT


def publisher(bind: BindPair, **kw: object) -> Rfc2136Publisher:
    args: dict[str, object] = {
        "server": bind.primary,
        "port": bind.port,
        "tsig_name": bind.tsig_name,
        "tsig_secret": bind.tsig_secret,
        "timeout": 2.0,
    }
    args.update(kw)
    return Rfc2136Publisher(**args)  # type: ignore[arg-type]


def raw_strings(bind: BindPair, which: str, name: str) -> list[list[bytes]]:
    ip, port = bind.server(which)
    q = dns.message.make_query(name, dns.rdatatype.TXT)
    q.flags &= ~dns.flags.RD
    r = dns.query.tcp(q, ip, port=port, timeout=2)
    return [list(rd.strings) for rrset in r.answer for rd in rrset]


def test_publish_reaches_both_servers_in_255_octet_strings(bind_pair: BindPair) -> None:
    server = publisher(bind_pair).apply(ZONE, [RecordChange(NAME, 60, TEXT)])
    assert server == f"{bind_pair.primary}:{bind_pair.port}"
    (strings,) = raw_strings(bind_pair, "primary", NAME)
    assert len(strings) == 2 and all(len(s) <= 255 for s in strings)
    assert b"".join(strings).decode() == TEXT
    # NOTIFY + IXFR bring it to the secondary without any action of ours
    assert bind_pair.wait_for_txt("secondary", NAME, lambda t: t == [TEXT], 10) == [TEXT]


def test_replace_is_idempotent_and_delete_removes(bind_pair: BindPair) -> None:
    pub = publisher(bind_pair)
    pub.apply(ZONE, [RecordChange(NAME, 60, TEXT)])
    pub.apply(ZONE, [RecordChange(NAME, 60, TEXT)])
    assert bind_pair.txt("primary", NAME) == [TEXT]
    pub.apply(ZONE, [RecordChange(NAME, 60, "v=DKIM1; p=")])
    assert bind_pair.txt("primary", NAME) == ["v=DKIM1; p="]
    pub.apply(ZONE, [RecordChange(NAME, 60, None)])
    assert bind_pair.txt("primary", NAME) == []
    pub.apply(ZONE, [RecordChange(NAME, 60, None)])  # deleting nothing is fine too


def test_large_batches_are_split_within_the_message_limit(bind_pair: BindPair) -> None:
    pub = publisher(bind_pair)
    changes = [RecordChange(f"s{i}.myesp._domainkey.{ZONE}.", 60, TEXT) for i in range(400)]
    pub.apply(ZONE, changes)
    assert pub.last_message_count > 1  # 400 x ~450 octets cannot fit one 64 KiB message
    for i in (0, 137, 399):
        assert bind_pair.txt("primary", f"s{i}.myesp._domainkey.{ZONE}.") == [TEXT]
    bind_pair.wait_for_txt("secondary", f"s399.myesp._domainkey.{ZONE}.", bool, 15)


def test_bad_tsig_secret_is_a_clear_failure(bind_pair: BindPair) -> None:
    wrong = base64.b64encode(secrets.token_bytes(32)).decode()
    with pytest.raises(PublishError, match=r"TSIG|NOTAUTH") as err:
        publisher(bind_pair, tsig_secret=wrong).apply(ZONE, [RecordChange(NAME, 60, TEXT)])
    assert "\n" not in err.value.reason
    assert bind_pair.txt("primary", NAME) == []


def test_unknown_tsig_key_is_a_clear_failure(bind_pair: BindPair) -> None:
    with pytest.raises(PublishError, match=r"TSIG|NOTAUTH"):
        publisher(bind_pair, tsig_name="nobody").apply(ZONE, [RecordChange(NAME, 60, TEXT)])


def test_zone_not_on_server_is_refused(bind_pair: BindPair) -> None:
    name = "s1._domainkey.other.test."
    with pytest.raises(PublishError, match=r"REFUSED|NOTAUTH") as err:
        publisher(bind_pair).apply("other.test", [RecordChange(name, 60, TEXT)])
    assert "other.test" in err.value.reason


def test_the_primary_says_which_zones_it_serves(bind_pair: BindPair) -> None:
    pub = publisher(bind_pair)
    assert pub.zone_problem(ZONE) is None
    problem = pub.zone_problem("other.test")
    assert problem is not None and "answers REFUSED for zone other.test" in problem
    bind_pair.stop_primary()  # no answer says nothing about the zone: it raises instead
    with pytest.raises(PublishError, match="did not answer a SOA query") as err:
        pub.zone_problem(ZONE)
    assert err.value.code is Reason.DNS_TIMEOUT


def test_nothing_listening_fails_fast() -> None:
    port = free_port(("127.0.0.1",))
    pub = Rfc2136Publisher(
        "127.0.0.1", port, "k", base64.b64encode(b"x" * 32).decode(), timeout=2.0
    )
    start = time.monotonic()
    with pytest.raises(PublishError, match=r"refused|timeout"):
        pub.apply(ZONE, [RecordChange(NAME, 60, TEXT)])
    assert time.monotonic() - start < 5


def probe_for(bind: BindPair, timeout: float = 1.0) -> AuthoritativeProbe:
    if bind.two_addresses:
        return AuthoritativeProbe(
            port=bind.port, timeout=timeout, resolver=[f"{bind.primary}:{bind.port}"]
        )
    return AuthoritativeProbe(
        timeout=timeout,
        nameservers=[f"{ip}:{port}" for ip, port in bind.addresses],
    )


def test_probe_finds_every_nameserver_and_queries_each(bind_pair: BindPair) -> None:
    publisher(bind_pair).apply(ZONE, [RecordChange(NAME, 60, TEXT)])
    bind_pair.wait_for_txt("secondary", NAME, bool)
    obs = probe_for(bind_pair).observe(ZONE, NAME)
    assert sorted(o.address for o in obs) == sorted(f"{i}:{p}" for i, p in bind_pair.addresses)
    for o in obs:
        assert (o.rcode, o.authoritative, o.texts, o.error) == ("NOERROR", True, (TEXT,), None)
    if bind_pair.two_addresses:  # discovered through the zone's NS records
        assert sorted(o.nameserver for o in obs) == [f"ns1.{ZONE}", f"ns2.{ZONE}"]


def test_probe_reports_a_dead_secondary_without_hanging(bind_pair: BindPair) -> None:
    publisher(bind_pair).apply(ZONE, [RecordChange(NAME, 60, TEXT)])
    bind_pair.stop_secondary()
    start = time.monotonic()
    obs = probe_for(bind_pair, timeout=1.0).observe(ZONE, NAME)
    assert time.monotonic() - start < 4
    by_addr = {o.address: o for o in obs}
    ip, port = bind_pair.server("secondary")
    dead = by_addr[f"{ip}:{port}"]
    assert dead.error and "timeout" in dead.error
    assert by_addr[f"{bind_pair.primary}:{bind_pair.port}"].texts == (TEXT,)


def test_probe_reads_each_servers_soa_serial(bind_pair: BindPair) -> None:
    """What the verifier asks to tell a secondary still taking a change from one that will
    not: the zone's serial on each address, None where no answer came."""
    probe = probe_for(bind_pair, timeout=1.0)
    publisher(bind_pair).apply(ZONE, [RecordChange(NAME, 60, TEXT)])
    bind_pair.wait_for_txt("secondary", NAME, bool)
    serial = bind_pair.serial("primary", ZONE)
    assert serial is not None
    assert probe.serials([ZONE, ZONE]) == {ZONE: [serial, serial]}
    bind_pair.stop_secondary()
    publisher(bind_pair).apply(ZONE, [RecordChange(NAME, 60, "v=DKIM1; p=")])
    newer = bind_pair.serial("primary", ZONE)
    assert newer is not None and newer != serial
    start = time.monotonic()
    found = probe.serials([ZONE], deadline=time.monotonic() + 1.5)[ZONE]
    assert time.monotonic() - start < 2.5
    primary = f"{bind_pair.primary}:{bind_pair.port}"
    order = sorted(f"{ip}:{port}" for ip, port in bind_pair.addresses)
    assert dict(zip(order, found, strict=True)) == {
        a: (newer if a == primary else None) for a in order
    }


def test_probe_explicit_nameservers_override_discovery(bind_pair: BindPair) -> None:
    publisher(bind_pair).apply(ZONE, [RecordChange(NAME, 60, TEXT)])
    probe = AuthoritativeProbe(timeout=1.0, nameservers=[f"{bind_pair.primary}:{bind_pair.port}"])
    (only,) = probe.observe(ZONE, NAME)
    assert only.authoritative and only.texts == (TEXT,)


def test_probe_unknown_zone_is_a_probe_error(bind_pair: BindPair) -> None:
    if not bind_pair.two_addresses:
        pytest.skip("NS discovery needs the 127.0.0.2 loopback alias (root)")
    with pytest.raises(ProbeError, match=r"no NS records for zone other\.test"):
        probe_for(bind_pair).observe("other.test", "s1._domainkey.other.test.")


def rsa2048_record() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(spki).decode()


def counting_tcp(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The names (wire form) the probe asks again over TCP."""
    asked: list[bytes] = []
    over_tcp = Pipeline._tcp

    def counted(self: Pipeline, q: Any) -> Any:
        asked.append(q.ask.qname)
        return over_tcp(self, q)

    monkeypatch.setattr(Pipeline, "_tcp", counted)
    return asked


def test_an_rsa_2048_answer_comes_over_udp_untruncated(
    bind_pair: BindPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = rsa2048_record()
    publisher(bind_pair).apply(ZONE, [RecordChange(NAME, 60, record)])
    bind_pair.wait_for_txt("secondary", NAME, lambda t: t == [record])
    plain = dns.message.make_query(NAME, dns.rdatatype.TXT)  # no EDNS: 512 octets at most
    plain.flags &= ~dns.flags.RD
    for ip, port in bind_pair.addresses:
        assert dns.query.udp(plain, ip, port=port, timeout=2).flags & dns.flags.TC
    over_tcp = counting_tcp(monkeypatch)
    obs = probe_for(bind_pair).observe(ZONE, NAME)
    assert [(o.texts, o.error) for o in obs] == [((record,), None)] * 2
    assert over_tcp == []


def test_many_records_are_checked_at_once_over_udp(
    bind_pair: BindPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"m{i}.myesp._domainkey.{ZONE}." for i in range(300)]
    publisher(bind_pair).apply(ZONE, [RecordChange(n, 60, TEXT) for n in names])
    bind_pair.wait_for_txt("secondary", names[-1], lambda t: t == [TEXT], 15)
    over_tcp = counting_tcp(monkeypatch)
    queries = [(ZONE, n) for n in names] + [("other.test", "s1._domainkey.other.test.")]
    results = probe_for(bind_pair).observe_many(queries)
    for result in results[:-1]:
        assert not isinstance(result, ProbeError)
        assert [(o.rcode, o.authoritative, o.texts) for o in result] == [
            ("NOERROR", True, (TEXT,))
        ] * 2
    assert over_tcp == []
    if bind_pair.two_addresses:  # a zone no server knows: its own error, in its place
        assert isinstance(results[-1], ProbeError)


def test_a_truly_truncated_answer_is_asked_again_over_tcp(
    bind_pair: BindPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    # four RSA-2048 records at one name (~1,700 octets) do not fit EDNS0's 1,232
    texts = [rsa2048_record() for _ in range(4)]
    update = dns.update.UpdateMessage(
        ZONE,
        keyring=dns.tsigkeyring.from_text({bind_pair.tsig_name: bind_pair.tsig_secret}),
        keyname=dns.name.from_text(bind_pair.tsig_name),
    )
    for text in texts:
        update.add(NAME, 60, dns.rdtypes.ANY.TXT.TXT(IN, TXT, split_strings(text)))
    assert dns.query.tcp(update, bind_pair.primary, port=bind_pair.port, timeout=5).rcode() == 0
    bind_pair.wait_for_txt("secondary", NAME, lambda t: len(t) == 4)
    over_tcp = counting_tcp(monkeypatch)
    obs = probe_for(bind_pair).observe(ZONE, NAME)
    assert [sorted(o.texts) for o in obs] == [sorted(texts)] * 2
    assert len(over_tcp) == 2  # once per server


def test_cname_lookup_tells_no_cname_from_no_answer(bind_pair: BindPair) -> None:
    # NXDOMAIN is an answer (the customer has no CNAME); REFUSED or silence is not, and
    # must never read as a removed CNAME (the watch would call the customer's DNS broken).
    probe = AuthoritativeProbe(timeout=0.5, resolver=[f"{bind_pair.primary}:{bind_pair.port}"])
    assert probe.cname(f"nothing._domainkey.{ZONE}.") is None
    with pytest.raises(ProbeError, match=r"cannot look up the CNAME s1\._domainkey\.other"):
        probe.cname("s1._domainkey.other.test.")  # a zone the server refuses
    silent = AuthoritativeProbe(timeout=0.5, resolver=[f"127.0.0.1:{free_port(('127.0.0.1',))}"])
    with pytest.raises(ProbeError, match="cannot look up the CNAME"):
        silent.cname(f"s1._domainkey.{ZONE}.")


@pytest.mark.parametrize(
    ("kw", "zone", "change", "reason"),
    [
        ({"tsig_algorithm": "hmac-nope"}, ZONE, None, "TSIG algorithm 'hmac-nope'"),
        ({"tsig_secret": "not base64!!"}, ZONE, None, "TSIG key 'k' is invalid"),
        ({}, ZONE, RecordChange("a..example.test.", 60, "x"), "invalid record 'a..example"),
        ({}, ZONE, RecordChange(NAME, 60, "v=DKIM1; n=\u00e9"), "invalid record"),
        ({}, "ex..ample", RecordChange(NAME, 60, "x"), "invalid zone name"),
    ],
)
def test_bad_input_is_a_publish_error_not_a_crash(
    kw: dict[str, str], zone: str, change: RecordChange | None, reason: str
) -> None:
    # callers catch ExternalError only: a raw KeyError/dnspython error would stop the tick
    secret = kw.get("tsig_secret", base64.b64encode(b"x" * 32).decode())
    algorithm = kw.get("tsig_algorithm", "hmac-sha256")
    with pytest.raises(PublishError, match=reason):
        pub = Rfc2136Publisher("127.0.0.1", 1, "k", secret, tsig_algorithm=algorithm)
        pub.apply(zone, [change] if change else [])


def test_probe_bad_name_is_a_probe_error() -> None:
    probe = AuthoritativeProbe(timeout=0.5, nameservers=["127.0.0.1:1"])
    with pytest.raises(ProbeError, match="invalid name"):
        probe.observe(ZONE, "a..b.")


def test_the_example_bind_policy_grants_only_dkim_selector_names(
    tmp_path: Path, bind_factory: Any
) -> None:
    # deploy/bind/named.conf.primary's rule, on a real BIND
    rule = 'grant "{key}" wildcard *._domainkey.{zone}. TXT;'
    pair = bind_factory(tmp_path / "bind", zones=(ZONE,), update_policy=rule)
    pub = publisher(pair)
    pub.apply(ZONE, [RecordChange(f"nov2026.myesp._domainkey.{ZONE}.", 60, TEXT)])
    pair.wait_for_txt("primary", f"nov2026.myesp._domainkey.{ZONE}.", lambda t: t == [TEXT])
    for name in (f"www.{ZONE}.", f"{ZONE}.", f"_dmarc.{ZONE}."):
        with pytest.raises(PublishError, match="REFUSED"):
            pub.apply(ZONE, [RecordChange(name, 60, "v=spf1 -all")])
