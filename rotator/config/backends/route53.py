"""kind = "route53": Amazon Route 53's API (ChangeResourceRecordSets), for zones hosted
there; and the credentials file it may be given instead of boto3's default chain."""

from __future__ import annotations

import configparser
import re
import tomllib
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import PlainValidator, model_validator

from ...domain.declared import flag, refuse, setting
from ...domain.errors import ConfigError
from ..addresses import AddressError, http_url, is_loopback
from ..values import PATH, number, resolve
from .common import BackendConfig, BackendSettings, read_secret

ZONE_ID = re.compile(r"^(?:/hostedzone/)?([A-Z0-9]{1,32})$")
REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$")
MAX_INSYNC = 3600.0


@dataclass(frozen=True)
class AwsKeys:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def __repr__(self) -> str:  # never the secret in a log line or a traceback
        return f"AwsKeys({self.access_key_id!r})"


@dataclass(frozen=True)
class Route53Config(BackendConfig):
    hosted_zone_id: str = ""  # bare id ("Z0123..."), for the backend's one zone
    region: str = "us-east-1"
    endpoint_url: str = ""
    credentials_file: Path | None = None
    wait_insync: bool = True
    insync_timeout: float = 180.0


def _zone_id(value: Any) -> str:
    found = ZONE_ID.match(value) if isinstance(value, str) else None
    if found is None:
        raise refuse(f'{value!r} is not a hosted zone id; write e.g. "Z0123456789ABCDEFGHIJ"')
    return found.group(1)


def _region(value: Any) -> str:
    if not isinstance(value, str) or not REGION.match(value):
        raise refuse(f'{value!r} is not an AWS region; write e.g. "us-east-1"')
    return value


def _endpoint(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise refuse('give an https:// URL, e.g. "https://route53.amazonaws.com"')
    try:
        http_url(value)
    except AddressError as exc:
        raise refuse(f"{value!r}: {exc}") from None
    parts = urllib.parse.urlsplit(value)
    if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
        raise refuse(f"{value!r}: plain http leaves loopback; use https://")
    return value


class Route53Settings(BackendSettings):
    hosted_zone_id: Annotated[str, PlainValidator(_zone_id)] = setting(
        "",
        "the hosted zone's id, for a backend of one zone (two hosted zones of one name); "
        "else each zone's public hosted zone is looked up by name",
        "by name",
    )
    region: Annotated[str, PlainValidator(_region)] = setting(
        "us-east-1", "the region requests are signed for (Route 53 is global)"
    )
    endpoint_url: Annotated[str, PlainValidator(_endpoint)] = setting(
        "", "another endpoint of Route 53's API (plain http only on loopback)", "AWS's"
    )
    credentials_file: Annotated[str, PATH] = setting(
        "",
        "a file holding aws_access_key_id and aws_secret_access_key (INI as "
        "~/.aws/credentials, or TOML; not readable by others)",
        "boto3's chain",
    )
    wait_insync: Annotated[bool, flag(lambda v: f"must be true or false, got {v!r}")] = setting(
        True, "after the changes, wait until Route 53 says INSYNC (served everywhere)"
    )
    insync_timeout: Annotated[float, number(0, MAX_INSYNC)] = setting(
        180.0, "seconds to wait for INSYNC before the publish counts as failed"
    )

    @model_validator(mode="after")
    def _one_zone_for_an_id(self) -> Route53Settings:
        if self.hosted_zone_id and len(self.zones) != 1:
            raise refuse(
                "hosted_zone_id names one hosted zone: give one zone, or leave it out "
                "to look each zone up by name",
                key="hosted_zone_id",
            )
        return self

    def config(self, base: Path) -> Route53Config:
        return Route53Config(
            **self.common(),
            hosted_zone_id=self.hosted_zone_id,
            region=self.region,
            endpoint_url=self.endpoint_url,
            credentials_file=resolve(self.credentials_file, base)
            if self.credentials_file
            else None,
            wait_insync=self.wait_insync,
            insync_timeout=self.insync_timeout,
        )


def read_credentials(path: Path, what: str) -> AwsKeys:
    """aws_access_key_id and aws_secret_access_key (aws_session_token optional) from a file
    with the secret file's rules: INI as ~/.aws/credentials (its [default] profile, or its
    only one) or TOML (top level, or its one table)."""
    table = _table(read_secret(path, what))
    key_id, secret = table.get("aws_access_key_id"), table.get("aws_secret_access_key")
    if not key_id or not secret:
        raise ConfigError(
            f"{path}: {what} has no aws_access_key_id and aws_secret_access_key; write "
            "them as in ~/.aws/credentials"
        )
    return AwsKeys(key_id, secret, table.get("aws_session_token") or None)


def _table(text: str) -> dict[str, str]:
    try:
        doc: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        doc = _ini(text)
    if "aws_access_key_id" not in doc:
        tables = [v for v in doc.values() if isinstance(v, dict)]
        doc = doc.get("default") or (tables[0] if len(tables) == 1 else {})
    return {k: v.strip() for k, v in doc.items() if isinstance(v, str)}


def _ini(text: str) -> dict[str, Any]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text if text.lstrip().startswith("[") else "[default]\n" + text)
    except configparser.Error:
        return {}
    return {name: dict(parser[name]) for name in parser.sections()}
