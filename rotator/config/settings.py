"""rotator.toml: where the database, keys, policies and signer files live, and how to reach
the DNS. Relative paths are resolved against the config file's directory."""

from __future__ import annotations

import grp
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..domain.errors import ConfigError
from .addresses import AddressError, check_host
from .dns import DnsConfig, parse_dns
from .targets import TargetConfig, parse_targets
from .values import fail, hostport, known_keys, number, path_value, refuse_loose

DEFAULT_CONFIG = Path("/etc/rotator/rotator.toml")
DEFAULT_METRICS_PORT = 9469


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


TOP_KEYS = (
    "database", "key_dir", "policy_dir", "tick_seconds", "log_format", "dns", "signer",
    "targets", "audit", "metrics", "safety",
)  # fmt: skip
MAX_TICK = 86400.0  # seconds: the daemon also wakes when the next step is due


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

    known_keys(data, TOP_KEYS, cfg_path, "")

    def path_of(table: Mapping[str, Any], key: str, where: str, default: str | None = None) -> Path:
        return path_value(table.get(key, default), base, cfg_path, where)

    dns_cfg = parse_dns(data.get("dns"), cfg_path, base)
    targets = parse_targets(data, cfg_path, base)
    key_dir = path_of(data, "key_dir", "key_dir", "keys")
    check_target_dirs(cfg_path, targets, key_dir)
    check_target_groups(cfg_path, targets)
    audit = data.get("audit", {})
    if not isinstance(audit, Mapping):
        raise fail(cfg_path, "[audit]", "must be a table")
    known_keys(audit, ("key_file", "anchor"), cfg_path, "audit")
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
        raise fail(cfg_path, "log_format", 'use "auto", "json" or "console"')
    tick = number(data.get("tick_seconds", 30), cfg_path, "tick_seconds", 0, MAX_TICK)
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
        raise fail(path, "[safety]", "must be a table")
    unknown = sorted(set(table) - {"max_share", "min_keys"})
    if unknown:
        raise fail(path, f"safety.{unknown[0]}", "unknown key; use max_share, min_keys")
    share = table.get("max_share", 0.25)
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
        raise fail(path, "safety.max_share", f"{share!r}: give a share above 0, up to 1 (all)")
    least = table.get("min_keys", 10)
    if isinstance(least, bool) or not isinstance(least, int) or least < 0:
        raise fail(path, "safety.min_keys", f"{least!r}: give a number of keys, 0 or more")
    return SafetyConfig(float(share), least)


def parse_metrics(table: object, path: Path) -> MetricsConfig:
    """[metrics] listen = "127.0.0.1:9469" (absent or "": off). The endpoint shows every
    domain's state to whoever connects, so only a loopback address unless allow_remote."""
    if not isinstance(table, Mapping):
        raise fail(path, "[metrics]", "must be a table")
    unknown = sorted(set(table) - {"listen", "allow_remote", "per_identity"})
    if unknown:
        raise fail(
            path, f"metrics.{unknown[0]}", "unknown key; use listen, allow_remote, per_identity"
        )
    flags = {}
    for key in ("allow_remote", "per_identity"):
        value = table.get(key, False)
        if not isinstance(value, bool):
            raise fail(path, f"metrics.{key}", f"must be true or false, got {value!r}")
        flags[key] = value
    listen = table.get("listen", "")
    if not isinstance(listen, str):
        raise fail(path, "metrics.listen", 'must be a string, e.g. "127.0.0.1:9469"')
    if not listen.strip():
        return MetricsConfig(per_identity=flags["per_identity"])
    host, port = hostport(listen.strip(), DEFAULT_METRICS_PORT, path, "metrics.listen")
    try:
        check_host(host)
    except AddressError as exc:
        raise fail(
            path, "metrics.listen", f'{listen!r}: {exc}; write e.g. "127.0.0.1:9469"'
        ) from None
    if not flags["allow_remote"] and not is_loopback(host):
        raise fail(
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


def check_target_groups(source: Path, targets: tuple[TargetConfig, ...]) -> None:
    """rotator itself gives a local target's files their key_group: it must exist here."""
    for t in targets:
        if not t.local or not t.key_group:
            continue
        try:
            grp.getgrnam(t.key_group)
        except KeyError:
            raise ConfigError(
                f'{source}: target {t.name}: key_group "{t.key_group}" is no group on this '
                "host; install the signer first (its package makes the group) or name its group"
            ) from None


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
