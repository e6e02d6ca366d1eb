"""PowerDNS Authoritative through its HTTP API: each zone's changes in one PATCH of TXT
RRsets (REPLACE, or DELETE; a very large batch in several), then a NOTIFY of its
secondaries. PowerDNS raises the SOA serial itself (the zone's `soa_edit_api`)."""

from __future__ import annotations

import contextlib
import http.client
import json
import ssl
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Any

from ...config.backends import BackendConfig
from ...config.backends.common import read_secret
from ...config.backends.powerdns import PowerDnsConfig
from ...domain.errors import PublishError
from ...domain.reasons import Reason
from ...domain.record import split_strings
from ...ports import SAID_NO, Publisher, RecordChange
from .fanout import PerZone

# PowerDNS refuses a body over webserver-max-bodysize (2 MB by default): a batch is sent in
# PATCHes of at most this much (about 2,000 RSA-2048 records each).
MAX_BODY = 1 << 20
MAX_ANSWER = 64 * 1024  # an error document is short; a success has no body
USER_AGENT = "rotator"


def txt_content(text: str) -> str:
    """A TXT record as PowerDNS (and a zone file) writes it: each 255-octet character-string
    quoted, `"` and `\\` escaped, anything not printable as \\DDD."""

    def quoted(chunk: bytes) -> str:
        out = []
        for b in chunk:
            if b in (0x22, 0x5C):
                out.append("\\" + chr(b))
            elif 0x20 <= b < 0x7F:
                out.append(chr(b))
            else:
                out.append(f"\\{b:03d}")
        return '"' + "".join(out) + '"'

    return " ".join(quoted(c) for c in split_strings(text))


def rrsets(zone: str, changes: Sequence[RecordChange]) -> list[dict[str, Any]]:
    """One RRset per name (PowerDNS refuses a name twice in a PATCH): the last change wins,
    as it would have if each had been sent alone."""
    last: dict[str, RecordChange] = {}
    for change in changes:
        last.pop(change.name.lower(), None)
        last[change.name.lower()] = change
    out: list[dict[str, Any]] = []
    for change in last.values():
        name = change.name if change.name.endswith(".") else change.name + "."
        if change.text is None:
            out.append({"name": name, "type": "TXT", "changetype": "DELETE"})
            continue
        try:
            content = txt_content(change.text)
        except ValueError as exc:
            raise PublishError(f"invalid record {change.name!r} for zone {zone}: {exc}") from None
        out.append(
            {
                "name": name,
                "type": "TXT",
                "ttl": change.ttl,
                "changetype": "REPLACE",
                "records": [{"content": content, "disabled": False}],
            }
        )
    return out


def bodies(sets: list[dict[str, Any]], limit: int = MAX_BODY) -> Iterator[bytes]:
    """The PATCH bodies: as many RRsets in each as fit `limit` octets."""
    chunk: list[bytes] = []
    size = 0
    for rrset in sets:
        encoded = json.dumps(rrset, separators=(",", ":")).encode()
        if chunk and size + len(encoded) + 1 > limit:
            yield b'{"rrsets":[' + b",".join(chunk) + b"]}"
            chunk, size = [], 0
        chunk.append(encoded)
        size += len(encoded) + 1
    if chunk:
        yield b'{"rrsets":[' + b",".join(chunk) + b"]}"


class PowerDnsPublisher(PerZone):
    def __init__(self, url: str, server_id: str, api_key: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        parts = urllib.parse.urlsplit(self.url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port
        self.base = parts.path + "/api/v1/servers/" + urllib.parse.quote(server_id, safe="")
        self.server_id = server_id
        self.api_key = api_key
        self.timeout = timeout
        self.requests = 0  # PATCHes sent, for the tests and benchmarks

    def in_rounds(self, zone: str) -> bool:
        return False  # one PATCH per batch: one change of the zone

    @property
    def where(self) -> str:
        return f"PowerDNS {self.url}"

    def apply(self, zone: str, changes: Sequence[RecordChange]) -> str:
        path = self._zone_path(zone)
        for body in bodies(rrsets(zone, changes)):
            self._call("PATCH", path, zone, body)
            self.requests += 1
        self._notify(zone)
        return self.where

    def zone_problem(self, zone: str) -> str | None:
        try:
            self._call("GET", self._zone_path(zone) + "?rrsets=false", zone)
        except PublishError as exc:
            if exc.code in SAID_NO:
                return exc.reason
            raise
        return None

    def _zone_path(self, zone: str) -> str:
        return f"{self.base}/zones/{urllib.parse.quote(zone.rstrip('.') + '.', safe='')}"

    def _notify(self, zone: str) -> None:
        """The secondaries hear of the change at once, not at PowerDNS's next check of
        changed serials (xfr-cycle-interval, a minute by default). Best effort: a zone
        that is not of kind Master refuses (a Native zone is replicated by its database),
        and the records are in already: verification finds a secondary that lags."""
        with contextlib.suppress(PublishError):
            self._call("PUT", self._zone_path(zone) + "/notify", zone)

    def _call(self, method: str, path: str, zone: str, body: bytes | None = None) -> bytes:
        """One request within `timeout` (connect to the last octet of the answer); the
        answer's body if 2xx, else PublishError saying what PowerDNS said."""
        deadline = time.monotonic() + self.timeout
        conn: http.client.HTTPConnection
        if self.https:
            context = ssl.create_default_context()
            conn = http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout, context=context
            )
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        headers = {
            "X-API-Key": self.api_key,
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        }
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=body, headers=headers)
            _arm(conn, deadline)
            answer = conn.getresponse()
            data = b""
            while len(data) < MAX_ANSWER:
                _arm(conn, deadline)
                chunk = answer.read1(MAX_ANSWER - len(data))
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            raise PublishError(
                f"timeout after {self.timeout:g}s talking to {self.where} for zone {zone}",
                Reason.DNS_TIMEOUT,
            ) from None
        except ConnectionRefusedError:
            raise PublishError(
                f"connection refused by {self.where} (is pdns_server up, with webserver=yes "
                "and api=yes, listening there?)"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise PublishError(
                f"network error talking to {self.where}: {str(exc) or type(exc).__name__}"
            ) from None
        finally:
            conn.close()
        if 200 <= answer.status < 300:
            return data
        raise self._refusal(answer.status, data, zone)

    def _refusal(self, status: int, data: bytes, zone: str) -> PublishError:
        said = _error_text(data)
        if status in (401, 403):
            return PublishError(
                f"{self.where} refused the API key (HTTP {status}): check api_key_file "
                "against its api-key",
                Reason.DNS_CREDENTIAL,
            )
        if status == 404 or (status == 422 and "could not find" in said.lower()):
            return PublishError(
                f"{self.where} has no zone {zone.rstrip('.')} (server {self.server_id}): "
                "create it there, or give the zone to another backend",
                Reason.DNS_NOTAUTH,
            )
        return PublishError(
            f"{self.where} answered HTTP {status} for zone {zone.rstrip('.')}"
            + (f": {said}" if said else "")
        )


def _arm(conn: http.client.HTTPConnection, deadline: float) -> None:
    """Each socket wait gets only what is left of the request's time."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    if conn.sock is not None:
        conn.sock.settimeout(left)


def _error_text(data: bytes) -> str:
    """PowerDNS's {"error": "..."} (or the start of whatever else it sent), on one line."""
    text = data.decode("utf-8", "replace")
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        text = doc["error"]
    return " ".join(text.split())[:300]


def from_config(cfg: BackendConfig) -> Publisher:
    assert isinstance(cfg, PowerDnsConfig)
    return PowerDnsPublisher(
        url=cfg.url,
        server_id=cfg.server_id,
        api_key=read_secret(cfg.api_key_file, f"backend {cfg.name}: the PowerDNS API key"),
        timeout=cfg.timeout,
    )
