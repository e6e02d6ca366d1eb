"""kind = "powerdns": PowerDNS Authoritative through its HTTP API (one PATCH of RRsets per
zone and batch)."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import PlainValidator

from ...domain.declared import refuse, required, setting
from ..addresses import AddressError, http_url
from ..values import PATH, resolve
from .common import BackendConfig, BackendSettings

SERVER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


@dataclass(frozen=True)
class PowerDnsConfig(BackendConfig):
    url: str = "http://127.0.0.1:8081"
    server_id: str = "localhost"
    api_key_file: Path = Path()


def _url(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise refuse('give the URL of its webserver, e.g. "http://127.0.0.1:8081"')
    try:
        http_url(value)
    except AddressError as exc:
        raise refuse(f"{value!r}: {exc}") from None
    parts = urllib.parse.urlsplit(value)
    if parts.query or parts.fragment or parts.username or parts.password:
        raise refuse(
            f"{value!r}: give only scheme, host, port and path (the API key goes in "
            'api_key_file), e.g. "http://127.0.0.1:8081"'
        )
    return value.rstrip("/")


def _server_id(value: Any) -> str:
    if not isinstance(value, str) or not SERVER_ID.match(value):
        raise refuse(f'{value!r} is not a server id; PowerDNS Authoritative\'s is "localhost"')
    return value


class PowerDnsSettings(BackendSettings):
    url: Annotated[str, PlainValidator(_url)] = setting(
        "http://127.0.0.1:8081",
        "the PowerDNS webserver (`webserver-address`, `webserver-port`); `/api/v1` is added",
    )
    server_id: Annotated[str, PlainValidator(_server_id)] = setting(
        "localhost", "the server in the API's paths"
    )
    api_key_file: Annotated[str, PATH] = required(
        "the file holding the API key (`api-key`), sent as X-API-Key (not readable by others)"
    )

    def config(self, base: Path) -> PowerDnsConfig:
        return PowerDnsConfig(
            **self.common(),
            url=self.url,
            server_id=self.server_id,
            api_key_file=resolve(self.api_key_file, base),
        )
