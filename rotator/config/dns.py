"""[dns] of rotator.toml: the primary that takes UPDATEs, the TSIG key, the other backends
([[dns.backends]]), and where the authoritative servers and the customers' delegations are
looked up."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import PlainValidator, ValidationInfo, field_validator, model_validator

from ..domain.declared import Settings, refuse, required, setting
from ..domain.errors import ConfigError, InputError
from ..domain.names import check_dns_name, normalize_domain
from .backends import BackendConfig, BackendSettings, parse_backends
from .backends.common import TSIG_ALGORITHMS
from .values import PATH, PORT, ip_hostport, number, refuse_loose, resolve

TSIG_MIN_BYTES = 32
EXAMPLE_NS = '"ns1.esp.example"'
MAX_TIMEOUT = 300.0  # seconds: a DNS exchange slower than this is no answer


@dataclass(frozen=True)
class DnsConfig:
    primary: str | None  # IP address of the primary that takes UPDATEs (None: no default)
    primary_port: int
    tsig_name: str
    # base64, inline in the config; or read from tsig_secret_file only when an UPDATE is
    # about to be sent (read-only commands never load it). Never in a repr.
    tsig_secret: str = field(default="", repr=False)
    tsig_secret_file: Path | None = None
    tsig_algorithm: str = "hmac-sha256"
    timeout: float = 5.0
    nameserver_port: int = 53  # port used when querying discovered authoritative servers
    resolver: tuple[str, ...] = ()  # where to look up NS records and their addresses
    nameservers: tuple[str, ...] = ()  # explicit authoritative addresses (skip discovery)
    esp_nameservers: tuple[str, ...] = ()  # names customers delegate to (NS delegation)
    backends: tuple[BackendConfig, ...] = ()


def _primary(value: Any) -> tuple[str, int] | None:
    if value is None:
        return None  # every zone on a [[dns.backends]] entry (checked below)
    if not isinstance(value, str) or not value:
        raise refuse('give "ip:port", e.g. "127.0.0.1:5300"')
    return ip_hostport(value, 53, "192.0.2.53:53")


def _addresses(example: str) -> PlainValidator:
    def check(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise refuse(f'must be a list of "ip" or "ip:port", e.g. ["{example}"]')
        for v in value:
            ip_hostport(v, 53, example)
        return tuple(value)

    return PlainValidator(check)


def _tsig_name(value: Any) -> str:
    if value is None:
        return ""  # required with a primary (checked below)
    if not isinstance(value, str) or not value:
        raise refuse("missing; the TSIG key name the primary knows")
    try:
        check_dns_name(value, "the key name")
    except InputError as exc:
        raise refuse(f"{exc}; write it as the primary names the key") from None
    return value


def _algorithm(value: Any) -> str:
    if value not in TSIG_ALGORITHMS:
        raise refuse(f"{value!r} is not allowed; use one of {', '.join(TSIG_ALGORITHMS)}")
    return str(value)


def _esp_nameservers(value: Any) -> tuple[str, ...]:
    """The names customers delegate to, compared with the NS targets the delegations name."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise refuse(f"must be a list of host names, e.g. [{EXAMPLE_NS}]")
    out = []
    for name in value:
        try:
            out.append(normalize_domain(name))
        except InputError as exc:
            raise refuse(f"{exc}; give host names, e.g. {EXAMPLE_NS}") from None
    return tuple(out)


class DnsSettings(Settings):
    """[dns]: the primary, the TSIG key, where servers and delegations are looked up."""

    primary: Annotated[tuple[str, int] | None, PlainValidator(_primary)] = required(
        "`ip:port` (`[v6]:port`) of the primary that accepts RFC 2136 UPDATEs: an IP "
        "address, not a host name; the default backend, for every zone no "
        "`[[dns.backends]]` entry serves",
        "required, unless `backends` serve every zone",
    )
    tsig_secret_file: Annotated[str | None, PATH] = setting(
        None,
        "a file holding the TSIG secret, or the whole block `tsig-keygen -a hmac-sha256 NAME` "
        "prints (its key name and algorithm must be `tsig_name` and `tsig_algorithm`); read "
        "only when an UPDATE is about to be sent",
        "none",
    )
    tsig_secret: str = required(
        "the base64 TSIG secret, inline (the config must then not be readable by others); "
        "or set `tsig_secret_file`",
        "required with `primary`, or `tsig_secret_file`",
    )
    tsig_name: Annotated[str, PlainValidator(_tsig_name)] = required(
        "the TSIG key name, as the primary names the key", "required with `primary`"
    )
    tsig_algorithm: Annotated[str, PlainValidator(_algorithm)] = setting(
        "hmac-sha256", f"the TSIG algorithm: {', '.join(TSIG_ALGORITHMS)}"
    )
    timeout: Annotated[float, number(0, MAX_TIMEOUT)] = setting(
        5.0, "seconds per DNS exchange (above 0, up to 300)"
    )
    nameserver_port: Annotated[int, PORT] = setting(
        53, "port used to query the authoritative servers found in NS records (1 to 65535)"
    )
    resolver: Annotated[tuple[str, ...], _addresses("127.0.0.1:53")] = setting(
        (),
        '`["ip:port"]` used to look up NS records and their addresses (IP addresses)',
        "system resolver",
    )
    nameservers: Annotated[tuple[str, ...], _addresses("192.0.2.53")] = setting(
        (),
        '`["ip:port"]` (IP addresses): skip discovery and verify against exactly these '
        "(NS-delegation checks need discovery)",
        "discovery",
    )
    esp_nameservers: Annotated[tuple[str, ...], PlainValidator(_esp_nameservers)] = setting(
        (),
        "host names customers delegate `<esp>._domainkey.<domain>` to",
        "from each zone's NS",
    )

    backends: Annotated[tuple[BackendSettings, ...], PlainValidator(parse_backends)] = setting(
        (),
        "`[[dns.backends]]` tables: the zones published elsewhere (PowerDNS's API, tinydns, "
        "zone files, Route 53, ...): see DNS backends",
        "none",
    )

    @field_validator("tsig_secret", mode="plain")
    @classmethod
    def _secret(cls, value: Any, info: ValidationInfo) -> str:
        in_file = info.data.get("tsig_secret_file") is not None
        if value is not None and in_file:
            raise refuse("set tsig_secret or tsig_secret_file, not both")
        if in_file or (value is None and info.data.get("primary", ()) is None):
            return ""
        if not isinstance(value, str) or not value:
            raise refuse("missing; set tsig_secret or tsig_secret_file")
        try:
            check_secret(value)
        except ValueError as exc:
            raise refuse(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _default_or_backends(self) -> DnsSettings:
        if self.primary is None:
            if not self.backends:
                raise refuse(
                    'missing; set primary = "ip:port" (RFC 2136), or name the zones\' backends '
                    "in [[dns.backends]]",
                    key="dns.primary",
                )
            if self.tsig_name or self.tsig_secret or self.tsig_secret_file:
                raise refuse("the TSIG key is for primary, which is not set", key="dns.primary")
        elif not self.tsig_name:
            raise refuse("missing; the TSIG key name the primary knows", key="dns.tsig_name")
        return self

    def config(self, base: Path) -> DnsConfig:
        secret_file = self.tsig_secret_file
        primary = self.primary or (None, 53)
        return DnsConfig(
            primary=primary[0],
            primary_port=primary[1],
            tsig_name=self.tsig_name,
            tsig_secret=self.tsig_secret,
            tsig_secret_file=None if secret_file is None else resolve(secret_file, base),
            tsig_algorithm=self.tsig_algorithm,
            timeout=self.timeout,
            nameserver_port=self.nameserver_port,
            resolver=self.resolver,
            nameservers=self.nameservers,
            esp_nameservers=self.esp_nameservers,
            backends=tuple(b.config(base) for b in self.backends),
        )


def check_secret(secret: str) -> None:
    """ValueError saying what is wrong with a base64 TSIG secret."""
    try:
        raw = base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not base64 (as tsig-keygen prints it)") from None
    if len(raw) < TSIG_MIN_BYTES:
        raise ValueError(
            f"the secret is {len(raw)} bytes; use at least {TSIG_MIN_BYTES} "
            "(tsig-keygen -a hmac-sha256 makes 32)"
        )


def load_tsig_secret(dns: DnsConfig) -> str:
    """The TSIG secret, read from its file at the moment it is needed."""
    if dns.tsig_secret_file is None:
        return dns.tsig_secret
    where = f"dns.tsig_secret_file {dns.tsig_secret_file}"
    refuse_loose(dns.tsig_secret_file, "the TSIG secret file", readable_secret=True)
    try:
        text = dns.tsig_secret_file.read_text()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it: {exc.strerror}") from None
    secret = key_block_secret(text, dns, where) if "{" in text else text.strip()
    try:
        check_secret(secret)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return secret


_KEY_BLOCK = re.compile(
    r'^\s*key\s+"?(?P<name>[^"\s{]+)"?\s*\{(?P<body>[^}]*)\}\s*;?\s*$', re.DOTALL
)


def key_block_secret(text: str, dns: DnsConfig, where: str) -> str:
    """The secret of a `key "NAME" { algorithm ALG; secret "..."; };` block, as
    `tsig-keygen NAME` prints it (a file with just the base64 secret works too). Its name and
    algorithm must be the ones the config names: the primary would refuse the others."""
    match = _KEY_BLOCK.match(text)
    if match is None:
        raise ConfigError(
            f"{where}: holds neither a base64 secret nor one tsig-keygen key block; "
            f"write `tsig-keygen -a {dns.tsig_algorithm} {dns.tsig_name}` into it"
        )
    fields: dict[str, str] = dict(re.findall(r'(\w+)\s+"?([^";\s]+)"?\s*;', match["body"]))
    name = match["name"].rstrip(".")
    if name != dns.tsig_name.rstrip("."):
        raise ConfigError(
            f'{where}: the key block is for key "{name}", but dns.tsig_name is '
            f'"{dns.tsig_name}"; make the two the same'
        )
    algorithm = fields.get("algorithm", "hmac-sha256")
    if algorithm != dns.tsig_algorithm:
        raise ConfigError(
            f"{where}: the key block's algorithm is {algorithm}, but dns.tsig_algorithm is "
            f"{dns.tsig_algorithm}; make the two the same"
        )
    if "secret" not in fields:
        raise ConfigError(f'{where}: the key block has no secret "..."; line')
    return fields["secret"]
