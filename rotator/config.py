"""rotator.toml: where the database, keys, policies and signer files live, and how to reach
the DNS. Relative paths are resolved against the config file's directory."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config_targets import TargetConfig, parse_targets
from .domain.errors import ConfigError

DEFAULT_CONFIG = Path("/etc/rotator/rotator.toml")
DEFAULT_METRICS_PORT = 9469


@dataclass(frozen=True)
class DnsConfig:
    primary: str  # host of the primary that takes UPDATEs
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


@dataclass(frozen=True)
class AuditConfig:
    key_file: Path  # HMAC key outside the database (0400; or a systemd credential)
    anchor: Path  # append-only file that gets the log's head after every transaction


@dataclass(frozen=True)
class MetricsConfig:
    """[metrics]: where the daemon serves /metrics, /healthz and /readyz ("" host: off)."""

    host: str = ""
    port: int = DEFAULT_METRICS_PORT
    # one series per identity (its key's age, its next rotation): only for small fleets
    per_identity: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.host)

    @property
    def listen(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Config:
    path: Path
    database: Path
    key_dir: Path
    policy_dir: Path
    tick_seconds: float
    dns: DnsConfig
    targets: tuple[TargetConfig, ...]
    audit: AuditConfig
    log_format: str = "auto"  # auto | json | console
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    safety: SafetyConfig = field(default_factory=lambda: SafetyConfig())
    extra: dict[str, Any] = field(default_factory=dict)


TSIG_ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512")  # nothing weaker
TSIG_MIN_BYTES = 32


def refuse_loose(path: Path, what: str, readable_secret: bool = False) -> None:
    """A file that decides what rotator runs or where it writes (config, policies) must not
    be writable by group or others; one holding a secret must not be readable by others."""
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return
    if mode & 0o022:
        raise ConfigError(
            f"{path}: {what} is writable by group or others (mode {mode:04o}); chmod go-w {path}"
        )
    if readable_secret and mode & 0o004:
        raise ConfigError(
            f"{path}: holds a secret but is readable by others (mode {mode:04o}); "
            f"chmod o-r {path}, or move the secret to dns.tsig_secret_file"
        )


def _fail(path: Path, key: str, problem: str) -> ConfigError:
    return ConfigError(f"{path}: {key}: {problem}")


def load_config(path: Path | str | None = None) -> Config:
    cfg_path = Path(path or os.environ.get("ROTATOR_CONFIG") or DEFAULT_CONFIG)
    try:
        data = tomllib.loads(cfg_path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"{cfg_path}: config file not found; pass --config or set ROTATOR_CONFIG "
            "(see deploy/rotator.toml)"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{cfg_path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{cfg_path}: not UTF-8 text; a config is a TOML file") from None
    except OSError as exc:
        what = "is a directory" if cfg_path.is_dir() else f"cannot be read: {exc.strerror}"
        raise ConfigError(
            f"{cfg_path}: {what}; pass --config with the path of rotator.toml"
        ) from None
    refuse_loose(cfg_path, "the config (it names the reload commands)")
    base = cfg_path.resolve().parent

    def path_of(table: Mapping[str, Any], key: str, where: str, default: str | None = None) -> Path:
        raw = table.get(key, default)
        if not isinstance(raw, str) or not raw:
            raise _fail(cfg_path, where, "missing or not a string path")
        p = Path(raw)
        return p if p.is_absolute() else base / p

    dns = data.get("dns")
    if not isinstance(dns, Mapping):
        raise _fail(cfg_path, "[dns]", "missing table; set primary, tsig_name, tsig_secret")
    primary = dns.get("primary")
    if not isinstance(primary, str) or not primary:
        raise _fail(cfg_path, "dns.primary", 'missing; e.g. "127.0.0.1:5300"')
    host, port = split_hostport(primary, 53, cfg_path, "dns.primary")
    secret = dns.get("tsig_secret")
    secret_file = dns.get("tsig_secret_file")
    secret_path: Path | None = None
    if secret is not None and secret_file is not None:
        raise _fail(cfg_path, "dns.tsig_secret", "set tsig_secret or tsig_secret_file, not both")
    if secret_file is not None:
        secret_path = path_of(dns, "tsig_secret_file", "dns.tsig_secret_file")
        secret = ""
    elif not isinstance(secret, str) or not secret:
        raise _fail(cfg_path, "dns.tsig_secret", "missing; set tsig_secret or tsig_secret_file")
    else:
        check_secret(secret, f"{cfg_path}: dns.tsig_secret")
        refuse_loose(cfg_path, "the config", readable_secret=True)
    tsig_name = dns.get("tsig_name")
    if not isinstance(tsig_name, str) or not tsig_name:
        raise _fail(cfg_path, "dns.tsig_name", "missing; the TSIG key name the primary knows")
    resolver = dns.get("resolver", [])
    nameservers = dns.get("nameservers", [])
    esp_ns = dns.get("esp_nameservers", [])
    if not isinstance(esp_ns, list) or not all(isinstance(v, str) and v for v in esp_ns):
        raise _fail(cfg_path, "dns.esp_nameservers", "must be a list of host names")
    for key, value in (("dns.resolver", resolver), ("dns.nameservers", nameservers)):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _fail(cfg_path, key, 'must be a list of "ip" or "ip:port" strings')
        for v in value:
            split_hostport(v, 53, cfg_path, key)
    dns_cfg = DnsConfig(
        primary=host,
        primary_port=port,
        tsig_name=tsig_name,
        tsig_secret=secret,
        tsig_secret_file=secret_path,
        tsig_algorithm=str(dns.get("tsig_algorithm", "hmac-sha256")),
        timeout=_number(dns.get("timeout", 5.0), cfg_path, "dns.timeout"),
        nameserver_port=int(
            _number(dns.get("nameserver_port", 53), cfg_path, "dns.nameserver_port")
        ),
        resolver=tuple(resolver),
        nameservers=tuple(nameservers),
        esp_nameservers=tuple(esp_ns),
    )

    targets = parse_targets(data, cfg_path, base)
    key_dir = path_of(data, "key_dir", "key_dir", "keys")
    check_target_dirs(cfg_path, targets, key_dir)
    if dns_cfg.tsig_algorithm not in TSIG_ALGORITHMS:
        raise _fail(
            cfg_path,
            "dns.tsig_algorithm",
            f"{dns_cfg.tsig_algorithm!r} is not allowed; use one of {', '.join(TSIG_ALGORITHMS)}",
        )
    audit = data.get("audit", {})
    if not isinstance(audit, Mapping):
        raise _fail(cfg_path, "[audit]", "must be a table")
    database = path_of(data, "database", "database", "rotator.db")
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    default_key = (
        str(Path(credentials) / "audit.key")
        if credentials and (Path(credentials) / "audit.key").exists()
        else str(database.parent / "audit.key")
    )
    audit_cfg = AuditConfig(
        key_file=path_of(audit, "key_file", "audit.key_file", default_key),
        anchor=path_of(audit, "anchor", "audit.anchor", str(database.parent / "anchor.log")),
    )
    log_format = data.get("log_format", "auto")
    if log_format not in ("auto", "json", "console"):
        raise _fail(cfg_path, "log_format", 'use "auto", "json" or "console"')
    tick = _number(data.get("tick_seconds", 30), cfg_path, "tick_seconds")
    if tick <= 0:
        raise _fail(cfg_path, "tick_seconds", "must be > 0")
    return Config(
        path=cfg_path,
        database=database,
        key_dir=key_dir,
        policy_dir=path_of(data, "policy_dir", "policy_dir", "policies"),
        tick_seconds=tick,
        dns=dns_cfg,
        targets=targets,
        audit=audit_cfg,
        log_format=log_format,
        metrics=parse_metrics(data.get("metrics", {}), cfg_path),
        safety=parse_safety(data.get("safety", {}), cfg_path),
    )


@dataclass(frozen=True)
class SafetyConfig:
    """[safety]: the most a tick or command may revoke, replace or remove at once."""

    max_share: float = 0.25  # of the active keys
    min_keys: int = 10  # never fewer than this (a small fleet would hold every rotation)


def parse_safety(table: object, path: Path) -> SafetyConfig:
    if not isinstance(table, Mapping):
        raise _fail(path, "[safety]", "must be a table")
    unknown = sorted(set(table) - {"max_share", "min_keys"})
    if unknown:
        raise _fail(path, f"safety.{unknown[0]}", "unknown key; use max_share, min_keys")
    share = table.get("max_share", 0.25)
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
        raise _fail(path, "safety.max_share", f"{share!r}: give a share above 0, up to 1 (all)")
    least = table.get("min_keys", 10)
    if isinstance(least, bool) or not isinstance(least, int) or least < 0:
        raise _fail(path, "safety.min_keys", f"{least!r}: give a number of keys, 0 or more")
    return SafetyConfig(float(share), least)


def parse_metrics(table: object, path: Path) -> MetricsConfig:
    """[metrics] listen = "127.0.0.1:9469" (absent or "": off). The endpoint shows every
    domain's state to whoever connects, so only a loopback address unless allow_remote."""
    if not isinstance(table, Mapping):
        raise _fail(path, "[metrics]", "must be a table")
    unknown = sorted(set(table) - {"listen", "allow_remote", "per_identity"})
    if unknown:
        raise _fail(
            path, f"metrics.{unknown[0]}", "unknown key; use listen, allow_remote, per_identity"
        )
    flags = {}
    for key in ("allow_remote", "per_identity"):
        value = table.get(key, False)
        if not isinstance(value, bool):
            raise _fail(path, f"metrics.{key}", f"must be true or false, got {value!r}")
        flags[key] = value
    listen = table.get("listen", "")
    if not isinstance(listen, str):
        raise _fail(path, "metrics.listen", 'must be a string, e.g. "127.0.0.1:9469"')
    if not listen.strip():
        return MetricsConfig(per_identity=flags["per_identity"])
    host, port = split_hostport(listen.strip(), DEFAULT_METRICS_PORT, path, "metrics.listen")
    if not flags["allow_remote"] and not is_loopback(host):
        raise _fail(
            path,
            "metrics.listen",
            f"{listen!r} is not a loopback address, and whoever reaches it sees the state of "
            f'every key: listen on "127.0.0.1:{port}", or set metrics.allow_remote = true '
            "(behind a firewall)",
        )
    return MetricsConfig(host=host, port=port, per_identity=flags["per_identity"])


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: where it resolves to is not known here
        return False


def check_target_dirs(source: Path, targets: tuple[TargetConfig, ...], key_dir: Path) -> None:
    """A target owns the keys/ of its directory (keys that left it are wiped there): that
    must never be, hold, or sit inside rotator's own key directory."""
    mine = key_dir.resolve()
    for t in targets:
        if t.legacy_tables is not None:
            continue
        theirs = (t.directory / "keys").resolve()
        if mine.is_relative_to(theirs) or theirs.is_relative_to(mine):
            raise ConfigError(
                f"{source}: target {t.name}: directory {t.directory} holds rotator's key_dir "
                f"{key_dir}; give the target a directory of its own"
            )


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


def _number(value: object, path: Path, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(path, key, f"must be a number, got {value!r}")
    return float(value)


def split_hostport(
    text: str, default_port: int, path: Path | None = None, key: str = "address"
) -> tuple[str, int]:
    """'1.2.3.4', '1.2.3.4:53', '[::1]:53', '::1' -> (host, port)."""
    host, port = text, default_port
    if text.startswith("["):
        end = text.find("]")
        host = text[1:end]
        if text[end + 1 :].startswith(":"):
            port = _port(text[end + 2 :], text, path, key)
    elif text.count(":") == 1:
        host, p = text.split(":")
        port = _port(p, text, path, key)
    if not host:
        raise ConfigError(f"{path or ''}: {key}: {text!r} has no host")
    return host, port


def _port(p: str, text: str, path: Path | None, key: str) -> int:
    if not p.isdigit() or not 0 < int(p) < 65536:
        raise ConfigError(f"{path or ''}: {key}: {text!r} has an invalid port")
    return int(p)
