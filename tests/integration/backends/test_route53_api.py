"""kind = "route53" against moto's server (an emulator of Route 53's API, not AWS), read
back through the API: what the shared contract does not reach. A private hosted zone and a
credential without the permissions are refused in one line, a DELETE repeats exactly what
Route 53 holds (values and TTL someone else set), many deletes read the zone in pages,
hosted_zone_id picks one of two zones of a name, and 3,000 changes pass moto's own
1,000-value check of a request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rotator.adapters.dns.route53.publisher import Route53Publisher, make_client
from rotator.config.backends.route53 import AwsKeys
from rotator.domain.errors import PublishError
from rotator.domain.reasons import Reason
from rotator.ports import RecordChange
from tests.support.route53api import Route53Api

pytestmark = pytest.mark.integration

ZONE = "dkim.r53.test"
TWICE = "twice.r53.test"  # two public hosted zones of this name
PRIVATE = "private.r53.test"
REVOKED = "v=DKIM1; p="


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Route53Api]:
    started = Route53Api(
        tmp_path_factory.mktemp("moto"),
        zones=(ZONE, TWICE),
        private_zones=(PRIVATE,),
        twin_zones=(TWICE,),
    ).start()
    try:
        yield started
    finally:
        started.stop()


def publisher(api: Route53Api, keys: AwsKeys | None = None, **kw: Any) -> Route53Publisher:
    client = make_client("us-east-1", api.url, keys or api.keys, timeout=5)
    return Route53Publisher(client, timeout=5, where="moto", **kw)


def held(api: Route53Api, zone_id: str | None = None) -> dict[str, tuple[int, list[str]]]:
    """The TXT record sets moto holds, by name: (TTL, values)."""
    out: dict[str, tuple[int, list[str]]] = {}
    r53 = api.client()
    params: dict[str, Any] = {"HostedZoneId": zone_id or api.zone_ids[ZONE]}
    while True:
        page = r53.list_resource_record_sets(**params)
        for rrset in page["ResourceRecordSets"]:
            if rrset["Type"] == "TXT":
                values = [r["Value"] for r in rrset["ResourceRecords"]]
                out[rrset["Name"]] = (rrset["TTL"], values)
        if not page["IsTruncated"]:
            return out
        params.update(
            StartRecordName=page["NextRecordName"], StartRecordType=page["NextRecordType"]
        )


def name(label: str, zone: str = ZONE) -> str:
    return f"{label}.myesp._domainkey.{zone}."


def test_a_private_hosted_zone_is_no_public_dkim(api: Route53Api) -> None:
    pub = publisher(api)
    problem = pub.zone_problem(PRIVATE)
    assert problem is not None and "is private" in problem and PRIVATE in problem
    (result,) = pub.publish([(PRIVATE, [RecordChange(name("s1", PRIVATE), 60, REVOKED)])])
    assert isinstance(result, PublishError) and result.reason == problem


def test_a_credential_without_the_permissions_is_refused(api: Route53Api) -> None:
    pub = publisher(api, api.outsider)
    (result,) = pub.publish([(ZONE, [RecordChange(name("denied"), 60, REVOKED)])])
    assert isinstance(result, PublishError) and result.code == Reason.DNS_CREDENTIAL
    assert "AccessDenied" in result.reason and "grant route53:ListHostedZonesByName" in (
        result.reason
    )
    assert "\n" not in result.reason


def test_a_delete_repeats_what_route53_holds(api: Route53Api) -> None:
    """Someone else's record at the name (two values, another TTL) goes as a whole."""
    rec = name("theirs")
    api.client().change_resource_record_sets(
        HostedZoneId=api.zone_ids[ZONE],
        ChangeBatch={
            "Changes": [
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": rec,
                        "Type": "TXT",
                        "TTL": 3600,
                        "ResourceRecords": [{"Value": '"one"'}, {"Value": '"two"'}],
                    },
                }
            ]
        },
    )
    pub = publisher(api)
    assert pub.apply(ZONE, [RecordChange(rec, 60, None)]).endswith("INSYNC")
    assert rec not in held(api)
    assert pub.apply(ZONE, [RecordChange(rec, 60, None)]).endswith("(nothing to change)")


def test_a_long_record_is_stored_as_255_octet_strings(api: Route53Api) -> None:
    text = "v=DKIM1; k=rsa; p=" + "A" * 720  # an RSA-4096 key's length
    pub = publisher(api)
    pub.apply(ZONE, [RecordChange(name("long"), 300, text)])
    ttl, (value,) = held(api)[name("long")]
    assert ttl == 300
    assert value == '"' + text[:255] + '" "' + text[255:510] + '" "' + text[510:] + '"'


def test_3000_changes_then_their_deletes_in_pages(api: Route53Api) -> None:
    pub = publisher(api)
    texts = [f"v=DKIM1; p=AAAA{i:04d}" for i in range(3000)]  # short: the values bind
    changes = [RecordChange(name(f"bulk{i}"), 60, t) for i, t in enumerate(texts)]
    pub.apply(ZONE, changes)
    assert pub.requests[-1] == 6  # 500 UPSERTs a request: each counts twice
    now = held(api)
    assert all(now[c.name] == (60, [f'"{c.text}"']) for c in changes)
    gone = [RecordChange(c.name, 60, None) for c in changes[::2]]
    before = pub.calls.retries
    pub.apply(ZONE, gone)
    assert pub.requests[-1] == 2 and pub.calls.retries == before  # 1,500 DELETEs
    now = held(api)
    assert not any(c.name in now for c in gone) and changes[1].name in now


def test_hosted_zone_id_picks_one_of_two_zones_of_a_name(api: Route53Api) -> None:
    problem = publisher(api).zone_problem(TWICE)
    assert problem is not None and "2 public hosted zones are named" in problem
    twin = api.twin_ids[TWICE]
    chosen = publisher(api, hosted_zone_ids={TWICE: twin})
    assert chosen.zone_problem(TWICE) is None
    chosen.apply(TWICE, [RecordChange(name("s1", TWICE), 60, REVOKED)])
    assert held(api, twin)[name("s1", TWICE)] == (60, [f'"{REVOKED}"'])
    assert name("s1", TWICE) not in held(api, api.zone_ids[TWICE])
