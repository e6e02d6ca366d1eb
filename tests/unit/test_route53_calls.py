"""kind = "route53" against botocore's Stubber (which checks each request's parameters
against Route 53's API model; nothing leaves the process): throttled requests retried with
growing waits within the timeout, one line for every refusal, the hosted zone found by
name, deletes that repeat what Route 53 holds, and the wait for INSYNC."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from rotator.adapters.dns.route53.calls import Calls
from rotator.adapters.dns.route53.changes import delete, txt_value, upsert
from rotator.adapters.dns.route53.publisher import Route53Publisher
from rotator.domain.errors import PublishError
from rotator.domain.reasons import Reason
from rotator.ports import RecordChange

from .test_route53_changes import RSA4096, ZONE, name

ZONE_ID = "Z0123456789ABCDEFGHIJ"


# --- retries -----------------------------------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def session() -> Any:
    """One session for all: it loads Route 53's API model once."""
    return boto3.session.Session(
        aws_access_key_id="AKIAFAKEFAKEFAKEFAKE",
        aws_secret_access_key="fake",
        region_name="us-east-1",
    )


@pytest.fixture
def client(session: Any) -> Iterator[tuple[Any, Stubber]]:
    real = session.client("route53")
    with Stubber(real) as stub:
        yield real, stub
        stub.assert_no_pending_responses()


CHANGED = {
    "ChangeInfo": {"Id": "/change/C1", "Status": "PENDING", "SubmittedAt": "2026-01-01T00:00:00Z"}
}


def calls(real: Any, time: FakeTime, timeout: float = 10.0) -> Calls:
    return Calls(real, timeout, sleep=time.sleep, clock=time.clock, jitter=lambda: 1.0)


@pytest.mark.parametrize(
    ("code", "status", "message"),
    [
        ("Throttling", 400, "Rate exceeded"),
        (
            "PriorRequestNotComplete",
            400,
            "The request was rejected because Route 53 was still processing a prior request.",
        ),
        ("ServiceUnavailable", 503, ""),
        ("SomethingNew", 400, "Rate exceeded"),
    ],
)
def test_throttling_is_retried_with_growing_waits(
    client: tuple[Any, Stubber], code: str, status: int, message: str
) -> None:
    real, stub = client
    for _ in range(2):
        stub.add_client_error("get_change", code, message, status)
    stub.add_response("get_change", CHANGED, {"Id": "C1"})
    time = FakeTime()
    call = calls(real, time)
    assert call("get_change", "zone x", Id="C1")["ChangeInfo"]["Id"] == "/change/C1"
    assert time.slept == [0.2, 0.4] and call.retries == 2


def test_jitter_spreads_each_wait_over_its_upper_half(client: tuple[Any, Stubber]) -> None:
    real, stub = client
    stub.add_client_error("get_change", "Throttling", "Rate exceeded", 400)
    stub.add_response("get_change", CHANGED, {"Id": "C1"})
    time = FakeTime()
    Calls(real, 10, sleep=time.sleep, clock=time.clock, jitter=lambda: 0.0)(
        "get_change", "z", Id="C1"
    )
    assert time.slept == [0.1]


def test_retries_end_at_the_timeout(client: tuple[Any, Stubber]) -> None:
    real, stub = client
    for _ in range(6):
        stub.add_client_error("get_change", "Throttling", "Rate exceeded", 400)
    time = FakeTime()
    with pytest.raises(PublishError) as err:
        calls(real, time, timeout=10)("get_change", "zone dkim.esp.test", Id="C1")
    assert time.slept == [0.2, 0.4, 0.8, 1.6, 3.2]  # the next (5 s) would pass 10 s
    assert err.value.code == Reason.DNS_TIMEOUT
    assert err.value.reason == (
        "Route 53 still answers Throttling to GetChange for zone dkim.esp.test after 10s of retries"
    )


@pytest.mark.parametrize(
    ("code", "status", "reason", "says"),
    [
        ("InvalidClientTokenId", 403, Reason.DNS_CREDENTIAL, "check credentials_file"),
        ("SignatureDoesNotMatch", 403, Reason.DNS_CREDENTIAL, "check credentials_file"),
        ("AccessDenied", 403, Reason.DNS_CREDENTIAL, "grant route53:ChangeResourceRecordSets"),
        ("InvalidChangeBatch", 400, Reason.DNS_UPDATE_FAILED, "refused ChangeResourceRecordSets"),
        ("NoSuchHostedZone", 404, Reason.DNS_UPDATE_FAILED, "zone dkim.esp.test: NoSuchHostedZone"),
    ],
)
def test_a_refusal_is_one_line_and_not_retried(
    client: tuple[Any, Stubber], code: str, status: int, reason: Reason, says: str
) -> None:
    real, stub = client
    stub.add_client_error("change_resource_record_sets", code, "no\nsuch  zone", status)
    time = FakeTime()
    with pytest.raises(PublishError) as err:
        calls(real, time)(
            "change_resource_record_sets",
            "zone dkim.esp.test",
            HostedZoneId=ZONE_ID,
            ChangeBatch={"Changes": [upsert(name(1), 60, '"x"')]},
        )
    assert err.value.code == reason and time.slept == []
    assert "\n" not in err.value.reason and "no such zone" in err.value.reason
    assert says in err.value.reason


# --- the publisher -----------------------------------------------------------------------


def hosted(
    zone: str = ZONE, private: bool = False, id_: str = ZONE_ID, count: int = 2
) -> dict[str, Any]:
    return {
        "Id": f"/hostedzone/{id_}",
        "Name": zone + ".",
        "CallerReference": "x",
        "Config": {"PrivateZone": private},
        "ResourceRecordSetCount": count,
    }


def listing(*zones: dict[str, Any]) -> dict[str, Any]:
    return {"HostedZones": list(zones), "IsTruncated": False, "MaxItems": "100"}


def test_a_publish_waits_for_insync(client: tuple[Any, Stubber]) -> None:
    real, stub = client
    stub.add_response(
        "list_hosted_zones_by_name",
        listing(hosted("a" + ZONE), hosted(), hosted(private=True, id_="ZPRIVATE")),
        {"DNSName": ZONE + ".", "MaxItems": "100"},
    )
    stub.add_response(
        "change_resource_record_sets",
        CHANGED,
        {
            "HostedZoneId": ZONE_ID,
            "ChangeBatch": {
                "Comment": "rotator",
                "Changes": [upsert(name(1), 300, txt_value(name(1), RSA4096))],
            },
        },
    )
    for status in ("PENDING", "PENDING", "INSYNC"):
        stub.add_response(
            "get_change", {"ChangeInfo": {**CHANGED["ChangeInfo"], "Status": status}}, {"Id": "C1"}
        )
    time = FakeTime()
    pub = Route53Publisher(real, sleep=time.sleep, clock=time.clock)
    where = pub.apply(ZONE, [RecordChange(name(1), 300, RSA4096)])
    assert where == f"Route 53 hosted zone {ZONE_ID}, change C1 INSYNC"
    assert time.slept == [1.0, 2.0]


def test_insync_is_waited_for_only_so_long(client: tuple[Any, Stubber]) -> None:
    real, stub = client
    stub.add_response("list_hosted_zones_by_name", listing(hosted()))
    stub.add_response("change_resource_record_sets", CHANGED)
    for _ in range(4):
        stub.add_response("get_change", CHANGED, {"Id": "C1"})
    time = FakeTime()
    pub = Route53Publisher(real, insync_timeout=10, sleep=time.sleep, clock=time.clock)
    with pytest.raises(PublishError) as err:
        pub.apply(ZONE, [RecordChange(name(1), 300, "v=DKIM1; p=")])
    assert err.value.code == Reason.DNS_TIMEOUT
    assert err.value.reason == (
        f"Route 53 took the changes to zone {ZONE}, but change C1 is still PENDING after 10s"
    )


def test_a_delete_repeats_what_route53_holds_and_skips_what_is_gone(
    client: tuple[Any, Stubber],
) -> None:
    real, stub = client
    held = {
        "Name": name(1),
        "Type": "TXT",
        "TTL": 3600,
        "ResourceRecords": [{"Value": '"a"'}, {"Value": '"b"'}],
    }
    stub.add_response("list_hosted_zones_by_name", listing(hosted(count=100_000)))
    for n, answer in ((name(1), [held]), (name(2), [{**held, "Name": name(3)}])):
        stub.add_response(
            "list_resource_record_sets",
            {"ResourceRecordSets": answer, "IsTruncated": False, "MaxItems": "1"},
            {
                "HostedZoneId": ZONE_ID,
                "StartRecordName": n,
                "StartRecordType": "TXT",
                "MaxItems": "1",
            },
        )
    stub.add_response(
        "change_resource_record_sets",
        CHANGED,
        {"HostedZoneId": ZONE_ID, "ChangeBatch": {"Comment": "rotator", "Changes": [delete(held)]}},
    )
    pub = Route53Publisher(real, wait_insync=False)
    assert pub.apply(ZONE, [RecordChange(name(i), 60, None) for i in (1, 2)]).endswith("change C1")


def test_many_deletes_read_the_zone_in_pages(client: tuple[Any, Stubber]) -> None:
    real, stub = client
    stub.add_response("list_hosted_zones_by_name", listing(hosted(count=450)))
    stub.add_response("list_hosted_zones_by_name", listing(hosted(count=450)))
    rrsets = [
        {"Name": name(i), "Type": "TXT", "TTL": 60, "ResourceRecords": [{"Value": '"x"'}]}
        for i in range(450)
    ]
    stub.add_response(
        "list_resource_record_sets",
        {
            "ResourceRecordSets": rrsets[:300],
            "IsTruncated": True,
            "NextRecordName": name(300),
            "NextRecordType": "TXT",
            "MaxItems": "300",
        },
        {"HostedZoneId": ZONE_ID, "MaxItems": "300"},
    )
    stub.add_response(
        "list_resource_record_sets",
        {"ResourceRecordSets": rrsets[300:], "IsTruncated": False, "MaxItems": "300"},
        {
            "HostedZoneId": ZONE_ID,
            "MaxItems": "300",
            "StartRecordName": name(300),
            "StartRecordType": "TXT",
        },
    )
    stub.add_response("change_resource_record_sets", CHANGED)
    pub = Route53Publisher(real, wait_insync=False)
    pub.apply(
        ZONE,
        [RecordChange(name(i), 60, None) for i in range(0, 450, 3)]
        + [RecordChange(name("gone"), 60, None)],
    )
    assert pub.requests == [1]


@pytest.mark.parametrize(
    ("zones", "configured", "problem"),
    [
        ([], None, f"Route 53 has no hosted zone named {ZONE} for these credentials"),
        ([hosted(private=True)], None, f"hosted zone {ZONE_ID} ({ZONE}) on Route 53 is private"),
        (
            [hosted(), hosted(id_="ZOTHER")],
            None,
            f"2 public hosted zones are named {ZONE} ({ZONE_ID}, ZOTHER): set hosted_zone_id",
        ),
        ([hosted(), hosted(id_="ZOTHER")], "ZOTHER", None),
        ([hosted()], "ZOTHER", f"Route 53 has no hosted zone ZOTHER named {ZONE}"),
    ],
)
def test_the_zone_problem_names_the_hosted_zone(
    client: tuple[Any, Stubber],
    zones: list[dict[str, Any]],
    configured: str | None,
    problem: str | None,
) -> None:
    real, stub = client
    stub.add_response("list_hosted_zones_by_name", listing(*zones))
    pub = Route53Publisher(real, hosted_zone_ids={ZONE: configured} if configured else None)
    found = pub.zone_problem(ZONE)
    assert found == problem if problem is None else found is not None and found.startswith(problem)


def test_a_record_outside_the_zone_is_refused_before_any_request(
    client: tuple[Any, Stubber],
) -> None:
    real, _ = client
    with pytest.raises(PublishError, match=r"record s1\.example\.org\. is outside zone"):
        Route53Publisher(real).apply(ZONE, [RecordChange("s1.example.org.", 60, "x")])
