"""kind = "route53": moto's server as Route 53's API (an emulator of it, not AWS), and a
BIND primary + secondary standing in for Route 53's nameservers.

moto stores record sets but serves no DNS. Propagation plays the part of Route 53's
propagation honestly: it reads what moto holds (ListResourceRecordSets, as any client
would) every fraction of a second and sends each difference to the BIND primary as one
TSIG-signed UPDATE; the primary NOTIFYs its secondary, which pulls IXFR. So the records
reach two real authoritative servers a moment after the API took them, and the verifier
waits for them there as it would for Route 53's. moto answers INSYNC at once; on AWS,
GetChange turns INSYNC only once every Route 53 nameserver has the change."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update

from rotator.config.backends.route53 import AwsKeys
from rotator.demo.localdns import BindPair
from rotator.domain.errors import RotatorError
from tests.support.route53api import Route53Api

ZONE = "dkim.route53.test"
UNSERVED = "elsewhere.route53.test"  # no hosted zone of that name
UPDATE_NAMES = 50  # names per UPDATE to BIND: 50 RSA-4096 records fit one message

Held = tuple[int, tuple[str, ...]]  # TTL, TXT values
Served = dict[str, Held]  # name -> what it holds


class Propagation:
    """Copies the TXT record sets moto holds for `zone` to the BIND primary."""

    def __init__(self, api: Route53Api, zone: str, pair: BindPair, period: float = 0.2) -> None:
        self.client = api.client()
        self.zone_id = api.zone_ids[zone]
        self.zone = zone
        self.pair = pair
        self.period = period
        self.keyring = dns.tsigkeyring.from_text({pair.tsig_name: pair.tsig_secret})
        self.served: Served = {}
        self.error: str | None = None  # the last failure, kept for a test's message
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="route53-propagation", daemon=True)

    def start(self) -> Propagation:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self.sync()
                self.error = None
            except Exception as exc:  # keep trying: a test's wait says what it saw
                self.error = f"{type(exc).__name__}: {exc}"

    def held(self) -> Served:
        out: Served = {}
        params: dict[str, Any] = {"HostedZoneId": self.zone_id, "MaxItems": "300"}
        while True:
            page = self.client.list_resource_record_sets(**params)
            for rrset in page["ResourceRecordSets"]:
                if rrset["Type"] == "TXT":
                    values = tuple(r["Value"] for r in rrset.get("ResourceRecords", []))
                    out[rrset["Name"].lower()] = (int(rrset["TTL"]), values)
            if not page.get("IsTruncated"):
                return out
            params.update(
                StartRecordName=page["NextRecordName"], StartRecordType=page["NextRecordType"]
            )

    def sync(self) -> None:
        now = self.held()
        todo: list[tuple[str, Held | None]] = [(n, None) for n in self.served.keys() - now.keys()]
        todo += [(n, held) for n, held in now.items() if self.served.get(n) != held]
        for i in range(0, len(todo), UPDATE_NAMES):  # a DNS message holds 64 KiB at most
            self._send(todo[i : i + UPDATE_NAMES])
        self.served = now

    def _send(self, changes: list[tuple[str, Held | None]]) -> None:
        update = dns.update.UpdateMessage(
            self.zone,
            keyring=self.keyring,
            keyname=dns.name.from_text(self.pair.tsig_name),
            keyalgorithm=dns.tsig.HMAC_SHA256,
        )
        for name, held in changes:
            if held is None:
                update.delete(name, dns.rdatatype.TXT)
                continue
            ttl, values = held
            rdatas = [dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, v) for v in values]
            update.replace(name, ttl, *rdatas)
        response = dns.query.tcp(update, self.pair.primary, port=self.pair.port, timeout=5)
        if response.rcode() != dns.rcode.NOERROR:
            raise RotatorError(f"BIND refused the copy: {dns.rcode.to_text(response.rcode())}")


class Route53Servers:
    kind = "route53"
    zone = ZONE
    unserved_zone = UNSERVED

    def __init__(self, base: Path) -> None:
        self.api = Route53Api(base / "moto", zones=(ZONE,)).start()
        try:
            self.pair = BindPair(base / "bind", zones=(ZONE,)).start()
        except BaseException:
            self.api.stop()
            raise
        self.propagation = Propagation(self.api, ZONE, self.pair).start()

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return list(self.pair.addresses)

    def server(self, which: str) -> tuple[str, int]:
        return self.pair.server(which)

    def backend_table(self, workdir: Path, wrong_credential: bool = False) -> str:
        keys = self.api.keys
        if wrong_credential:
            keys = AwsKeys(keys.access_key_id, "not-the-secret-access-key-of-this-user")
        creds = self.api.credentials_file(workdir / "route53.credentials", keys)
        nameservers = ", ".join(f'"{ip}:{port}"' for ip, port in self.addresses)
        return (
            f'[[dns.backends]]\nname = "route53"\nkind = "route53"\n'
            f'zones = ["{ZONE}", "{UNSERVED}"]\nendpoint_url = "{self.api.url}"\n'
            f'credentials_file = "{creds}"\nnameservers = [{nameservers}]\ntimeout = 3\n'
        )

    def stop(self) -> None:
        self.propagation.stop()
        self.pair.stop()
        self.api.stop()


def start_route53(base: Path) -> Route53Servers:
    return Route53Servers(base)
