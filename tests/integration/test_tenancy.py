"""ESP tenancy against real nameservers: the customer's own DNS (a second BIND pair on
127.0.0.3/.4) delegates myesp._domainkey.acme.test to the ESP's pair (127.0.0.1/.2); a
third-party customer is signed by an ESP-controlled domain; both also carry the ESP's
feedback-loop signature. Verification follows the real delegation from the customer's
servers, and dkimpy checks every signature."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import dkim
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdatatype
import dns.tsigkeyring
import dns.update
import pytest

from rotator.demo.localdns import BindPair, ensure_loopback_alias
from rotator.domain.model import KeyState
from rotator.domain.record import split_strings
from tests.support.cli import customer_add

from .rotatorenv import MESSAGE, RotatorEnv, query_txt

pytestmark = pytest.mark.integration

POLICIES = Path(__file__).resolve().parents[2] / "policies"
ACME_ZONE = "myesp._domainkey.acme.test"
CNAME_ZONE = "cname.esp.test"
THIRD_PARTY_ZONE = "esp-dkim.test"
ESP_ZONE = "fbl.esp.test"


class Tenancy:
    def __init__(self, tmp: Path, bind_factory: Callable[..., BindPair]) -> None:
        self.esp = bind_factory(
            tmp / "esp", zones=(ACME_ZONE, THIRD_PARTY_ZONE, ESP_ZONE, CNAME_ZONE)
        )
        self.customer = bind_factory(
            tmp / "customer",
            zones=("acme.test",),
            ips=("127.0.0.3", "127.0.0.4"),
            port=self.esp.port,
        )
        self.env = RotatorEnv(tmp, self.esp, POLICIES)
        cfg = self.env.config.read_text()
        # discovery through both the ESP's and the customer's servers (like a resolver would)
        cfg = cfg.replace(
            f'resolver = ["{self.esp.primary}:{self.esp.port}"]',
            f'resolver = ["{self.esp.primary}:{self.esp.port}", "127.0.0.3:{self.esp.port}"]',
        )
        self.env.config.write_text(cfg)

    def customer_update(self, *changes: tuple[str, str, str, str | None]) -> None:
        """The customer's IT edits acme.test: (op, name, type, value), op add|delete."""
        update = dns.update.UpdateMessage(
            "acme.test",
            keyring=dns.tsigkeyring.from_text({self.customer.tsig_name: self.customer.tsig_secret}),
            keyname=dns.name.from_text(self.customer.tsig_name),
        )
        for op, name, rdtype, value in changes:
            if op == "add":
                update.add(name, 300, rdtype, value)
            else:
                update.delete(name, rdtype)
        r = dns.query.tcp(update, self.customer.primary, port=self.customer.port, timeout=5)
        assert r.rcode() == 0

    def delegate(self) -> None:
        """The customer's IT adds the NS records rotator printed (plus glue, in-bailiwick)."""
        update = dns.update.UpdateMessage(
            "acme.test",
            keyring=dns.tsigkeyring.from_text({self.customer.tsig_name: self.customer.tsig_secret}),
            keyname=dns.name.from_text(self.customer.tsig_name),
        )
        for n, ip in (("ns1", self.esp.primary), ("ns2", self.esp.secondary)):
            update.add(f"{ACME_ZONE}.", 86400, "NS", f"{n}.{ACME_ZONE}.")
            update.add(f"{n}.{ACME_ZONE}.", 86400, "A", ip)
        r = dns.query.tcp(update, self.customer.primary, port=self.customer.port, timeout=5)
        assert r.rcode() == 0


def follow_delegation(
    start_ip: str, port: int, esp_ip: str = "127.0.0.2"
) -> Callable[..., bytes | None]:
    """dkimpy's DNS lookup as a resolver does it: ask the customer's server, follow a
    referral (with glue) or a CNAME to the ESP's servers, return the TXT."""

    def lookup(name: bytes | str, timeout: float = 5) -> bytes | None:
        qname = name.decode() if isinstance(name, bytes) else name
        server = start_ip
        for _ in range(4):
            q = dns.message.make_query(qname, dns.rdatatype.TXT)
            q.flags &= ~dns.flags.RD
            r = dns.query.udp(q, server, port=port, timeout=timeout)
            txt = [b"".join(rd.strings) for rs in r.answer if rs.rdtype == 16 for rd in rs]
            if txt:
                return txt[0]
            cname = [rd.target.to_text() for rs in r.answer if rs.rdtype == 5 for rd in rs]
            if cname:  # out of the customer's zone: into the ESP's
                qname, server = cname[0], esp_ip
                continue
            glue = [rd.address for rs in r.additional if rs.rdtype == 1 for rd in rs]
            if not glue or r.flags & dns.flags.AA:
                return None
            server = glue[0]
        return None

    return lookup


@pytest.fixture
def ten(tmp_path: Path, bind_factory: Callable[..., BindPair]) -> Iterator[Tenancy]:
    if not ensure_loopback_alias("127.0.0.3") or not ensure_loopback_alias("127.0.0.4"):
        pytest.skip("needs loopback aliases 127.0.0.3/.4 for the customer's DNS (root)")
    t = Tenancy(tmp_path, bind_factory)
    try:
        yield t
    finally:
        t.env.close()


@pytest.mark.timeout(180)
def test_ns_delegation_third_party_and_esp_signature(ten: Tenancy) -> None:
    env = ten.env
    env.cli("esp", "add", ESP_ZONE, "--policy", "demo")
    out = env.cli(
        *customer_add("Acme", "acme.test", "ns-delegation", esp_signature=ESP_ZONE),
    ).stdout
    # exactly the records the customer's IT must add, in zone-file syntax
    assert f"{ACME_ZONE}. 86400 IN NS ns1.{ACME_ZONE}." in out
    assert f"{ACME_ZONE}. 86400 IN NS ns2.{ACME_ZONE}." in out
    out = env.cli(
        *customer_add(
            "Beta",
            "beta.example",
            "third-party",
            signing_domain=f"beta.{THIRD_PARTY_ZONE}",
            zone=THIRD_PARTY_ZONE,
            esp_signature=ESP_ZONE,
        ),
    ).stdout
    assert "Nothing to add" in out

    check = env.cli("customer", "check", "Acme", check=False)
    assert check.returncode != 0 and "missing" in check.stdout
    env.start()
    # without the delegation the acme key may be published but never verified
    stuck = env.wait_for(
        "acme awaiting customer DNS",
        lambda: next((k for k in env.list_keys("acme.test") if k.attempts >= 1), None),
    )
    assert stuck.state.value == "published"
    assert "awaiting customer DNS" in (stuck.last_error or "")
    assert "awaiting customer DNS" in env.cli("status").stdout
    esp_key = env.wait_for("ESP key active", lambda: env.key_in_state(ESP_ZONE, "active"))
    beta = env.wait_for(
        "third-party key active", lambda: env.key_in_state(f"beta.{THIRD_PARTY_ZONE}", "active")
    )

    ten.delegate()
    assert "present" in env.cli("customer", "check", "Acme").stdout
    acme = env.wait_for("acme key active", lambda: env.key_in_state("acme.test", "active"), 60)

    signing = (env.workdir / "opendkim" / "SigningTable").read_text()
    assert f"*@acme.test {acme.key_id}" in signing
    assert f"*@acme.test {esp_key.key_id}" in signing
    assert f"*@beta.example {beta.key_id}" in signing
    assert f"*@beta.example {esp_key.key_id}" in signing
    key_table = (env.workdir / "opendkim" / "KeyTable").read_text()
    lines = [x for x in key_table.splitlines() if x.startswith(esp_key.key_id + " ")]
    assert len(lines) == 1  # one key, two customers

    # acme mail: customer signature (found through the delegation) + ESP signature
    msg = MESSAGE
    for key, d in ((esp_key, ESP_ZONE), (acme, "acme.test")):
        msg = (
            dkim.sign(
                msg,
                key.selector.encode(),
                d.encode(),
                (env.workdir / "keys" / f"{key.key_id}.pem").read_bytes(),
                include_headers=[b"from", b"to", b"subject"],
            )
            + msg
        )
    via_customer = follow_delegation("127.0.0.3", ten.esp.port)
    d = dkim.DKIM(msg)
    assert d.verify(idx=0, dnsfunc=via_customer)  # d=acme.test, through the delegation
    assert d.verify(idx=1, dnsfunc=via_customer) is False  # fbl.esp.test is not acme's
    ip, port = ten.esp.server("secondary")

    def at_esp(n: bytes, timeout: float = 5) -> bytes:
        return (query_txt(ip, port, n.decode())[2] or [""])[0].encode()

    assert dkim.DKIM(msg).verify(idx=1, dnsfunc=at_esp)  # the feedback-loop signature
    # beta mail: signed d=beta.esp-dkim.test (third-party), records in the ESP's zone
    beta_mail = sign_with(env, beta, f"beta.{THIRD_PARTY_ZONE}")
    assert dkim.verify(beta_mail, dnsfunc=at_esp)
    log = [
        json.loads(x) for x in env.cli("log", "--json", "--domain", "acme.test").stdout.splitlines()
    ]
    added = next(e for e in log if e["type"] == "IdentityAdded")
    assert (added["payload"]["customer"], added["payload"]["mode"]) == ("Acme", "ns-delegation")
    assert env.stop() == 0


def test_bad_csv_row_changes_nothing(ten: Tenancy, tmp_path: Path) -> None:
    env = ten.env
    cfg = env.config.read_text()
    env.config.write_text(
        cfg.replace("[dns]\n", '[dns]\nesp_nameservers = ["dkim1.esp.test", "dkim2.esp.test"]\n')
    )
    csv_file = tmp_path / "customers.csv"
    csv_file.write_text(
        "customer,domain,mode,policy,signing_domain,zone\n"
        "Acme,acme.test,ns-delegation,demo,,\n"
        f"Gamma,gamma.example,third-party,demo,gamma.esp-dkim.test,{THIRD_PARTY_ZONE}\n"
        "Delta,delta..example,ns-delegation,demo,,\n"
    )
    before = env.store().info()["events"]
    bad = env.cli("customer", "import", str(csv_file), check=False)
    assert bad.returncode != 0
    assert "customers.csv line 4: domain:" in bad.stderr and "delta..example" in bad.stderr
    assert env.store().info()["events"] == before
    csv_file.write_text(csv_file.read_text().replace("delta..example", "delta.example"))
    # delta's own zone is not on the ESP's primary (it answers REFUSED): refused as a whole
    unserved = env.cli("customer", "import", str(csv_file), check=False)
    assert unserved.returncode != 0
    assert "domain delta.example: the primary" in unserved.stderr
    assert "answers REFUSED for zone myesp._domainkey.delta.example" in unserved.stderr
    assert env.store().info()["events"] == before
    csv_file.write_text("".join(csv_file.read_text().splitlines(keepends=True)[:3]))
    good = env.cli("customer", "import", str(csv_file))
    assert "imported 2 customer domains" in good.stdout
    assert "myesp._domainkey.acme.test. 86400 IN NS dkim1.esp.test." in good.stdout
    assert "myesp._domainkey.acme.test. 86400 IN NS dkim2.esp.test." in good.stdout
    assert env.store().info()["events"] == before + 2


def sign_with(env: RotatorEnv, key: object, domain: str, msg: bytes = MESSAGE) -> bytes:
    path = env.workdir / "keys" / f"{key.key_id}.pem"  # type: ignore[attr-defined]
    sel = key.selector.encode()  # type: ignore[attr-defined]
    return (
        bytes(
            dkim.sign(
                msg,
                sel,
                domain.encode(),
                path.read_bytes(),
                include_headers=[b"from", b"to", b"subject"],
            )
        )
        + msg
    )


@pytest.mark.timeout(240)
def test_ping_pong_cycles_through_both_slots(ten: Tenancy) -> None:
    env = ten.env
    out = env.cli(
        *customer_add("Acme", "acme.test", "ping-pong", zone=CNAME_ZONE),
    ).stdout
    cnames = [x.split() for x in out.splitlines() if " IN CNAME " in x]
    assert [c[0] for c in cnames] == ["dkim1._domainkey.acme.test.", "dkim2._domainkey.acme.test."]
    assert cnames[0][4] == f"dkim1.acme.test.{CNAME_ZONE}."
    ten.customer_update(*[("add", c[0], "CNAME", c[4]) for c in cnames])
    assert "present" in env.cli("customer", "check", "Acme").stdout
    via_customer = follow_delegation("127.0.0.3", ten.esp.port, ten.esp.secondary)
    env.start()
    seen: list[KeyState] = []
    for round_ in range(3):
        key = env.wait_for(
            f"key {round_ + 1} active",
            lambda: next(
                (
                    k
                    for k in env.list_keys("acme.test")
                    if k.state.value == "active" and k.key_id not in {s.key_id for s in seen}
                ),
                None,
            ),
            60,
        )
        seen.append(key)
        assert dkim.verify(sign_with(env, key, "acme.test"), dnsfunc=via_customer)
        if round_ < 2:
            if round_ == 1:  # the first slot is reusable only once its old key is revoked
                env.wait_for(
                    "first key revoked", lambda: env.key_in_state("acme.test", "destroyed"), 40
                )
            env.cli("rotate", "acme.test", "--reason", f"round {round_ + 2}")
    assert [k.selector for k in seen] == ["dkim1", "dkim2", "dkim1"]
    log = [
        json.loads(x) for x in env.cli("log", "--json", "--key", seen[2].key_id).stdout.splitlines()
    ]
    verified = next(e for e in log if e["type"] == "KeyVerified")
    activated = next(e for e in log if e["type"] == "KeyActivated")
    # a reused name waits out the old record's TTL (2 s in the demo policy) before activation
    assert verified["payload"]["activate_at"] > verified["at"]
    assert activated["at"] >= verified["payload"]["activate_at"]
    assert env.stop() == 0


@pytest.mark.timeout(180)
def test_cname_mode_uses_only_resolving_cnames(ten: Tenancy) -> None:
    env = ten.env
    out = env.cli(
        *customer_add("Acme", "acme.test", "cname", zone=CNAME_ZONE),
    ).stdout
    cnames = [x.split() for x in out.splitlines() if " IN CNAME " in x]
    assert len(cnames) == 12 and cnames[2][0] == "myesp3._domainkey.acme.test."
    ten.customer_update(*[("add", c[0], "CNAME", c[4]) for c in cnames[:3]])  # only 3 of 12
    env.start()
    first = env.wait_for("myesp1 active", lambda: env.key_in_state("acme.test", "active"))
    assert first.selector == "myesp1"
    assert "only 2 pre-created CNAMEs left" in env.cli("status").stdout
    # the customer's IT removes the next CNAME by mistake: the next key cannot go live
    ten.customer_update(("delete", cnames[1][0], "CNAME", None))
    env.cli("rotate", "acme.test", "--reason", "cname test")
    stuck = env.wait_for(
        "myesp2 blocked",
        lambda: next(
            (k for k in env.list_keys("acme.test") if k.selector == "myesp2" and k.attempts >= 2),
            None,
        ),
    )
    assert stuck.state.value == "published"
    assert "CNAME myesp2._domainkey.acme.test." in (stuck.last_error or "")
    assert env.key_in_state("acme.test", "active").key_id == first.key_id
    ten.customer_update(("add", cnames[1][0], "CNAME", cnames[1][4]))
    second = env.wait_for(
        "myesp2 active after the CNAME is back",
        lambda: env.key_in_state("acme.test", "active", {first.key_id}),
        60,
    )
    assert second.selector == "myesp2"
    via_customer = follow_delegation("127.0.0.3", ten.esp.port, ten.esp.secondary)
    assert dkim.verify(sign_with(env, second, "acme.test"), dnsfunc=via_customer)
    assert env.stop() == 0


@pytest.mark.timeout(120)
def test_customer_generated_key(ten: Tenancy, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    env = ten.env
    env.cli(
        *customer_add("Acme", "acme.test", "customer-key"),
    )
    pem_file = tmp_path / "customer.pem"
    pem_file.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    out = env.cli(
        "customer", "import-key", "acme.test", "--selector", "cust1", "--key", str(pem_file)
    ).stdout
    record_line = next(x for x in out.splitlines() if " IN TXT " in x)
    assert record_line.startswith("cust1._domainkey.acme.test. 2 IN TXT")  # the policy's TTL
    check = env.cli("customer", "check", "Acme", check=False)
    assert check.returncode != 0 and "cust1._domainkey.acme.test." in check.stdout
    env.start()
    stuck = env.wait_for(
        "verification waits for the customer's record",
        lambda: next((k for k in env.list_keys("acme.test") if k.attempts >= 1), None),
    )
    assert stuck.state.value == "published" and "NXDOMAIN" in (stuck.last_error or "")
    assert env.answers("cust1._domainkey.acme.test.")["primary"][2] == []  # never published
    text = record_line.split("( ", 1)[1].rsplit(" )", 1)[0]
    value = "".join(part.strip('"') for part in text.split('" "'))
    # the customer publishes their record in their own zone, without k= (defaults to rsa)
    chunks = split_strings(value.replace("k=rsa; ", ""))
    quoted = " ".join(f'"{c.decode()}"' for c in chunks)
    ten.customer_update(("add", "cust1._domainkey.acme.test.", "TXT", quoted))
    key = env.wait_for("customer key active", lambda: env.key_in_state("acme.test", "active"))
    assert "present" in env.cli("customer", "check", "Acme").stdout
    via_customer = follow_delegation("127.0.0.3", ten.esp.port, ten.esp.secondary)
    assert dkim.verify(sign_with(env, key, "acme.test"), dnsfunc=via_customer)
    env.cli("rotate", "acme.test", "--reason", "policy says so")
    env.wait_for(
        "rotation needed notice",
        lambda: "rotation needed from customer" in env.cli("status").stdout,
    )
    assert env.key_in_state("acme.test", "active").key_id == key.key_id
    assert env.stop() == 0


@pytest.mark.timeout(180)
def test_a_mode_change_hands_over_without_a_gap(ten: Tenancy) -> None:
    # third-party (d=acme.esp-dkim.test) -> NS delegation (d=acme.test): the old identity
    # signs until the new one's first key is verified through the customer's delegation
    env = ten.env
    old_d = f"acme.{THIRD_PARTY_ZONE}"
    env.cli(
        *customer_add(
            "Acme", "acme.test", "third-party", signing_domain=old_d, zone=THIRD_PARTY_ZONE
        )
    )
    env.start()
    old = env.wait_for("third-party key active", lambda: env.key_in_state(old_d, "active"))
    out = env.cli("domain", "set-mode", old_d, "ns-delegation", "--reason", "own d=").stdout
    assert "takes over" in out and f"{ACME_ZONE}. 86400 IN NS ns1.{ACME_ZONE}." in out
    waiting = env.wait_for(
        "new key awaiting the delegation",
        lambda: next((k for k in env.list_keys("acme.test") if k.attempts >= 1), None),
    )
    assert "awaiting customer DNS" in (waiting.last_error or "")
    assert env.key_in_state(old_d, "active").key_id == old.key_id  # no gap
    signing = (env.workdir / "opendkim" / "SigningTable").read_text()
    assert f"*@acme.test {old.key_id}" in signing and waiting.key_id not in signing
    ten.delegate()
    new = env.wait_for("acme key active", lambda: env.key_in_state("acme.test", "active"), 60)
    signing = (env.workdir / "opendkim" / "SigningTable").read_text()
    assert f"*@acme.test {new.key_id}" in signing and old.key_id not in signing
    assert env.key_in_state(old_d, "active") is None  # handed over in the same step
    mail = sign_with(env, new, "acme.test")
    assert dkim.verify(mail, dnsfunc=follow_delegation("127.0.0.3", ten.esp.port))
    log = env.cli("log", "--json", "--type", "IdentityRemoved").stdout.splitlines()
    assert [(e["domain"], e["reason"]) for e in map(json.loads, log)] == [
        (old_d, "handed over to acme.test (mode ns-delegation)")
    ]
    assert env.stop() == 0
