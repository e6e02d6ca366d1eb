"""Route 53 as a DNS backend: a zone's changes as UPSERTs and exact DELETEs, in ChangeBatch
chunks, then GetChange until INSYNC so that verification starts once Route 53 says every
one of its nameservers has them."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ....config.backends.route53 import AwsKeys, Route53Config, read_credentials
from ....domain.errors import PublishError
from ....domain.reasons import Reason
from ....ports import SAID_NO, RecordChange
from ..fanout import PerZone
from .calls import Calls
from .changes import Change, absolute, chunks, delete, last_per_name, txt_value, upsert

PAGE = 300  # record sets one ListResourceRecordSets answer holds at most
FIRST_POLL = 1.0  # seconds between GetChange polls, doubled up to LONGEST_POLL
LONGEST_POLL = 10.0


class Route53Publisher(PerZone):
    def __init__(
        self,
        client: Any,
        timeout: float = 10.0,
        hosted_zone_ids: Mapping[str, str] | None = None,
        wait_insync: bool = True,
        insync_timeout: float = 180.0,
        where: str = "Route 53",
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.calls = Calls(client, timeout, where, sleep, clock)
        self.where = where
        self.configured = {absolute(z): i for z, i in (hosted_zone_ids or {}).items()}
        self.wait_insync = wait_insync
        self.insync_timeout = insync_timeout
        self.sleep = sleep
        self.clock = clock
        self._ids: dict[str, str] = {}  # zone -> hosted zone id, once found
        self.requests: list[int] = []  # ChangeResourceRecordSets per apply(), for benches

    def apply(self, zone: str, changes: Sequence[RecordChange]) -> str:
        final: dict[str, RecordChange] = last_per_name([(c.name, c) for c in changes])
        for name in final:
            if not covers(zone, name):
                raise PublishError(f"record {name} is outside zone {zone}", Reason.RECORD_INVALID)
        out: list[Change] = [
            upsert(name, c.ttl, txt_value(name, c.text))
            for name, c in final.items()
            if c.text is not None
        ]
        zone_id = self._zone_id(zone)
        try:
            gone = [name for name, c in final.items() if c.text is None]
            out += [delete(rrset) for rrset in self._current(zone_id, zone, gone)]
            change_id = ""
            batches = chunks(out)
            for batch in batches:
                answer = self.calls(
                    "change_resource_record_sets",
                    f"zone {zone}",
                    HostedZoneId=zone_id,
                    ChangeBatch={"Comment": "rotator", "Changes": batch},
                )
                change_id = bare(answer["ChangeInfo"]["Id"])
        except PublishError:
            self._ids.pop(absolute(zone), None)  # found again next time (a zone re-created)
            raise
        self.requests.append(len(batches))
        if not change_id:
            return f"{self.where} hosted zone {zone_id} (nothing to change)"
        if self.wait_insync:  # Route 53 applies a zone's changes in the order it took them
            self._wait(change_id, zone)
            return f"{self.where} hosted zone {zone_id}, change {change_id} INSYNC"
        return f"{self.where} hosted zone {zone_id}, change {change_id}"

    def zone_problem(self, zone: str) -> str | None:
        self._ids.pop(absolute(zone), None)  # ask again: the operator may have just fixed it
        try:
            self._zone_id(zone)
        except PublishError as exc:
            if exc.code in SAID_NO:
                return exc.reason
            raise
        return None

    # --- the hosted zone ----------------------------------------------------------------

    def _zone_id(self, zone: str) -> str:
        key = absolute(zone)
        if key not in self._ids:
            self._ids[key] = bare(self._hosted_zone(zone)["Id"])
        return self._ids[key]

    def _hosted_zone(self, zone: str) -> dict[str, Any]:
        """The hosted zone named exactly `zone`: the configured id, else the one public one."""
        key = absolute(zone)
        listing = self.calls(
            "list_hosted_zones_by_name", f"zone {zone}", DNSName=key, MaxItems="100"
        )
        named = [z for z in listing.get("HostedZones", []) if absolute(z["Name"]) == key]
        want = self.configured.get(key)
        if want is not None:
            named = [z for z in named if bare(z["Id"]) == want]
            if not named:
                raise PublishError(
                    f"{self.where} has no hosted zone {want} named {zone} for these "
                    "credentials: check hosted_zone_id",
                    Reason.DNS_NOTAUTH,
                )
        if not named:
            raise PublishError(
                f"{self.where} has no hosted zone named {zone} for these credentials: create "
                "it, or give the zone to another backend",
                Reason.DNS_NOTAUTH,
            )
        public = [z for z in named if not z.get("Config", {}).get("PrivateZone")]
        if not public:
            raise PublishError(
                f"hosted zone {bare(named[0]['Id'])} ({zone}) on {self.where} is private: "
                "only its VPCs see its records, which are no public DKIM; use a public "
                "hosted zone",
                Reason.DNS_NOTAUTH,
            )
        if len(public) > 1:
            ids = ", ".join(bare(z["Id"]) for z in public)
            raise PublishError(
                f"{len(public)} public hosted zones are named {zone} ({ids}): set "
                "hosted_zone_id to the one the zone's NS delegation points at",
                Reason.DNS_NOTAUTH,
            )
        found: dict[str, Any] = public[0]
        return found

    # --- what is there now ----------------------------------------------------------------

    def _current(self, zone_id: str, zone: str, names: Sequence[str]) -> list[dict[str, Any]]:
        """The TXT record sets at `names` exactly as Route 53 holds them (a DELETE must
        repeat them); a name without one is left out: deleting it again is no error."""
        if not names:
            return []
        wanted = set(names)
        found: list[dict[str, Any]] = []
        if len(names) > 2 and self._pages(zone) < len(names) - 1:  # fewer requests: read all
            found = [r for r in self._record_sets(zone_id, zone, None) if _txt_at(r, wanted)]
        else:
            for name in names:
                first = next(iter(self._record_sets(zone_id, zone, name, limit=1)), None)
                if first is not None and _txt_at(first, wanted):
                    found.append(first)
        for rrset in found:
            if rrset.get("SetIdentifier") is not None:
                raise PublishError(
                    f"record {rrset['Name']} in zone {zone} has a routing policy "
                    f"(SetIdentifier {rrset['SetIdentifier']}); rotator manages plain TXT "
                    "records only: remove it by hand",
                    Reason.RECORD_INVALID,
                )
        return found

    def _pages(self, zone: str) -> int:
        """ListResourceRecordSets requests that read the whole zone (asking costs one)."""
        count = int(self._hosted_zone(zone).get("ResourceRecordSetCount") or 0)
        return max(1, math.ceil(count / PAGE))

    def _record_sets(
        self, zone_id: str, zone: str, start: str | None, limit: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Record sets in Route 53's order from the TXT at `start` (None: the zone's first),
        at most `limit` of them."""
        params: dict[str, Any] = {"HostedZoneId": zone_id, "MaxItems": str(limit or PAGE)}
        if start is not None:
            params.update(StartRecordName=start, StartRecordType="TXT")
        while True:
            page = self.calls("list_resource_record_sets", f"zone {zone}", **params)
            yield from page.get("ResourceRecordSets", [])
            if limit is not None or not page.get("IsTruncated"):
                return
            params.update(
                StartRecordName=page["NextRecordName"], StartRecordType=page["NextRecordType"]
            )
            if page.get("NextRecordIdentifier"):
                params["StartRecordIdentifier"] = page["NextRecordIdentifier"]

    def _wait(self, change_id: str, zone: str) -> None:
        until = self.clock() + self.insync_timeout
        pause = FIRST_POLL
        while True:
            status = self.calls("get_change", f"zone {zone}", Id=change_id)["ChangeInfo"]
            if status["Status"] == "INSYNC":
                return
            if self.clock() + pause > until:
                raise PublishError(
                    f"{self.where} took the changes to zone {zone}, but change {change_id} "
                    f"is still {status['Status']} after {self.insync_timeout:g}s",
                    Reason.DNS_TIMEOUT,
                )
            self.sleep(pause)
            pause = min(pause * 2, LONGEST_POLL)


def _txt_at(rrset: dict[str, Any], names: set[str]) -> bool:
    return rrset.get("Type") == "TXT" and absolute(rrset.get("Name", "")) in names


def covers(zone: str, name: str) -> bool:
    zone, name = absolute(zone), absolute(name)
    return name == zone or name.endswith("." + zone)


def bare(resource_id: str) -> str:
    """ "/hostedzone/Z123" or "/change/C123" -> "Z123", "C123"."""
    return resource_id.rsplit("/", 1)[-1]


def build(cfg: Route53Config) -> Route53Publisher:
    keys = (
        read_credentials(cfg.credentials_file, f"backend {cfg.name}: the AWS credentials")
        if cfg.credentials_file is not None
        else None
    )
    return Route53Publisher(
        make_client(cfg.region, cfg.endpoint_url, keys, cfg.timeout),
        timeout=cfg.timeout,
        hosted_zone_ids={cfg.zones[0]: cfg.hosted_zone_id} if cfg.hosted_zone_id else None,
        wait_insync=cfg.wait_insync,
        insync_timeout=cfg.insync_timeout,
        where=f"Route 53 ({cfg.endpoint_url})" if cfg.endpoint_url else "Route 53",
    )


def make_client(region: str, endpoint_url: str, keys: AwsKeys | None, timeout: float) -> Any:
    """A boto3 client that tries each request once (Calls retries) and waits `timeout`
    seconds at most to connect and for an answer; without keys, boto3's default chain."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id=keys.access_key_id if keys else None,
        aws_secret_access_key=keys.secret_access_key if keys else None,
        aws_session_token=keys.session_token if keys else None,
        region_name=region,
    )
    return session.client(
        "route53",
        endpoint_url=endpoint_url or None,
        config=Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"total_max_attempts": 1, "mode": "standard"},
        ),
    )
