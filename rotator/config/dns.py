"""[dns] of rotator.toml: the primary that takes UPDATEs, the TSIG key, and where the
authoritative servers and the customers' delegations are looked up."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..domain.errors import ConfigError, InputError
from ..domain.names import check_dns_name, normalize_domain
from .values import fail, ip_hostport, known_keys, number, path_value, port, refuse_loose

TSIG_ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512")  # nothing weaker
TSIG_MIN_BYTES = 32
EXAMPLE_NS = '"ns1.esp.example"'
MAX_TIMEOUT = 300.0  # seconds: a DNS exchange slower than this is no answer
KEYS = (
    "primary", "tsig_name", "tsig_secret", "tsig_secret_file", "tsig_algorithm", "timeout",
    "nameserver_port", "resolver", "nameservers", "esp_nameservers",
)  # fmt: skip


@dataclass(frozen=True)
class DnsConfig:
    primary: str  # IP address of the primary that takes UPDATEs
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


def parse_dns(dns: object, cfg_path: Path, base: Path) -> DnsConfig:
    if not isinstance(dns, Mapping):
        raise fail(cfg_path, "[dns]", "missing table; set primary, tsig_name, tsig_secret")
    known_keys(dns, KEYS, cfg_path, "dns")
    primary = dns.get("primary")
    if not isinstance(primary, str) or not primary:
        raise fail(cfg_path, "dns.primary", 'missing; e.g. "127.0.0.1:5300"')
    host, primary_port = ip_hostport(primary, 53, cfg_path, "dns.primary", "192.0.2.53:53")
    secret = dns.get("tsig_secret")
    secret_file = dns.get("tsig_secret_file")
    secret_path: Path | None = None
    if secret is not None and secret_file is not None:
        raise fail(cfg_path, "dns.tsig_secret", "set tsig_secret or tsig_secret_file, not both")
    if secret_file is not None:
        secret_path = path_value(secret_file, base, cfg_path, "dns.tsig_secret_file")
        secret = ""
    elif not isinstance(secret, str) or not secret:
        raise fail(cfg_path, "dns.tsig_secret", "missing; set tsig_secret or tsig_secret_file")
    else:
        check_secret(secret, f"{cfg_path}: dns.tsig_secret")
        refuse_loose(cfg_path, "the config", readable_secret=True)
    tsig_name = dns.get("tsig_name")
    if not isinstance(tsig_name, str) or not tsig_name:
        raise fail(cfg_path, "dns.tsig_name", "missing; the TSIG key name the primary knows")
    try:
        check_dns_name(tsig_name, "the key name")
    except InputError as exc:
        raise fail(
            cfg_path, "dns.tsig_name", f"{exc}; write it as the primary names the key"
        ) from None
    algorithm = dns.get("tsig_algorithm", "hmac-sha256")
    if algorithm not in TSIG_ALGORITHMS:
        raise fail(
            cfg_path,
            "dns.tsig_algorithm",
            f"{algorithm!r} is not allowed; use one of {', '.join(TSIG_ALGORITHMS)}",
        )
    return DnsConfig(
        primary=host,
        primary_port=primary_port,
        tsig_name=tsig_name,
        tsig_secret=secret,
        tsig_secret_file=secret_path,
        tsig_algorithm=algorithm,
        timeout=number(dns.get("timeout", 5.0), cfg_path, "dns.timeout", 0, MAX_TIMEOUT),
        nameserver_port=port(dns.get("nameserver_port", 53), cfg_path, "dns.nameserver_port"),
        resolver=_addresses(dns, "resolver", cfg_path, "127.0.0.1:53"),
        nameservers=_addresses(dns, "nameservers", cfg_path, "192.0.2.53"),
        esp_nameservers=_esp_nameservers(dns.get("esp_nameservers", []), cfg_path),
    )


def _addresses(dns: Mapping[str, Any], key: str, cfg_path: Path, example: str) -> tuple[str, ...]:
    value = dns.get(key, [])
    if not isinstance(value, list):
        raise fail(
            cfg_path, f"dns.{key}", f'must be a list of "ip" or "ip:port", e.g. ["{example}"]'
        )
    for v in value:
        ip_hostport(v, 53, cfg_path, f"dns.{key}", example)
    return tuple(value)


def _esp_nameservers(value: object, cfg_path: Path) -> tuple[str, ...]:
    """The names customers delegate to, compared with the NS targets the delegations name."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise fail(
            cfg_path, "dns.esp_nameservers", f"must be a list of host names, e.g. [{EXAMPLE_NS}]"
        )
    out = []
    for name in value:
        try:
            out.append(normalize_domain(name))
        except InputError as exc:
            raise fail(
                cfg_path, "dns.esp_nameservers", f"{exc}; give host names, e.g. {EXAMPLE_NS}"
            ) from None
    return tuple(out)


def check_secret(secret: str, where: str) -> None:
    try:
        raw = base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where}: is not base64 (as tsig-keygen prints it)") from None
    if len(raw) < TSIG_MIN_BYTES:
        raise ConfigError(
            f"{where}: the secret is {len(raw)} bytes; use at least {TSIG_MIN_BYTES} "
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
    check_secret(secret, where)
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
