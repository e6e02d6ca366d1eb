"""rotator.toml: where the database, keys, policies and signer files live, and how to reach
the DNS, declared as the model RotatorToml and loaded into the frozen Config the rest of
rotator reads. Relative paths are resolved against the config file's directory."""

from __future__ import annotations

import grp
import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import (
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)

from ..domain.declared import (
    Settings,
    first_refusal,
    flag,
    real,
    refuse,
    required,
    setting,
    whole,
)
from ..domain.errors import ConfigError
from .addresses import AddressError, check_host, is_loopback, split_hostport
from .api import ApiConfig, ApiSettings
from .database import Database, check_database, database, redact
from .dns import DnsConfig, DnsSettings
from .keys import KeysConfig, KeysSettings
from .leadership import LeadershipConfig, LeadershipSettings
from .targets import (
    TARGETS_MEANING,
    LegacySigner,
    TargetConfig,
    Targets,
    refused,
    signer_beside_targets,
    target_configs,
)
from .values import PATH, config_error, number, refuse_loose, resolve
from .webhooks import WebhooksConfig, WebhooksSettings

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
    database: Database
    key_dir: Path
    policy_dir: Path
    tick_seconds: float
    dns: DnsConfig
    targets: tuple[TargetConfig, ...]
    audit: AuditConfig
    log_format: str = "auto"  # auto | json | console
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    safety: SafetyConfig = field(default_factory=lambda: SafetyConfig())
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    keys: KeysConfig = field(default_factory=KeysConfig)
    leadership: LeadershipConfig = field(default_factory=lambda: LeadershipSettings().config())
    extra: dict[str, Any] = field(default_factory=dict)


T = TypeVar("T", bound=Settings)
MAX_TICK = 86400.0  # seconds: the daemon also wakes when the next step is due


def _log_format(value: Any) -> str:
    if value not in ("auto", "json", "console"):
        raise refuse('use "auto", "json" or "console"')
    return str(value)


class AuditSettings(Settings):
    key_file: Annotated[str | None, PATH] = setting(
        None,
        "the audit MAC key, outside the database (0400; or the systemd credential "
        "`audit.key`; see Security)",
        "in `state_dir`",
    )
    anchor: Annotated[str | None, PATH] = setting(
        None,
        "the append-only file that gets the log's head after every transaction (see Security)",
        "in `state_dir`",
    )


class SafetySettings(Settings):
    UNKNOWN: ClassVar[str] = "unknown key"

    max_share: Annotated[
        float, real(lambda v: 0 < v <= 1, lambda v: f"{v!r}: give a share above 0, up to 1 (all)")
    ] = setting(
        0.25,
        "the safety valve: the most a tick or command revokes, replaces or removes at once, "
        "as a share of the active keys; also the pace of spread policies' scheduled work "
        "per hour",
    )
    min_keys: Annotated[
        int, whole(lambda v: v >= 0, lambda v: f"{v!r}: give a number of keys, 0 or more")
    ] = setting(10, "the safety valve never holds fewer than this many keys at once")

    def config(self) -> SafetyConfig:
        return SafetyConfig(self.max_share, self.min_keys)


def _listen(value: Any) -> str:
    if not isinstance(value, str):
        raise refuse('must be a string, e.g. "127.0.0.1:9469"')
    _address(value)
    return value


def _address(listen: str) -> tuple[str, int] | None:
    """(host, port) of a listen setting, None when it is off."""
    if not listen.strip():
        return None
    try:
        host, port = split_hostport(listen.strip(), DEFAULT_METRICS_PORT)
    except AddressError as exc:
        raise refuse(f"{listen.strip()!r}: {exc}") from None
    try:
        check_host(host)
    except AddressError as exc:
        raise refuse(f'{listen!r}: {exc}; write e.g. "127.0.0.1:9469"') from None
    return host, port


BOOL = flag(lambda v: f"must be true or false, got {v!r}")


class MetricsSettings(Settings):
    UNKNOWN: ClassVar[str] = "unknown key"

    listen: Annotated[str, PlainValidator(_listen)] = setting(
        "",
        '`"127.0.0.1:9469"`: where Prometheus metrics, `/healthz` and `/readyz` are served '
        "(see Metrics and health)",
        "off",
    )
    allow_remote: Annotated[bool, BOOL] = setting(
        False, "serve metrics on an address that is not loopback (behind a firewall)"
    )
    per_identity: Annotated[bool, BOOL] = setting(
        False, "one series per identity (its key's age, its next rotation): small fleets only"
    )

    @model_validator(mode="after")
    def _loopback(self) -> MetricsSettings:
        """The endpoint shows every domain's state to whoever connects: a loopback address
        unless allow_remote."""
        address = _address(self.listen)
        if address is None or self.allow_remote or is_loopback(address[0]):
            return self
        raise refuse(
            f"{self.listen!r} is not a loopback address, and whoever reaches it sees the state "
            f'of every key: listen on "127.0.0.1:{address[1]}", or set metrics.allow_remote = '
            "true (behind a firewall)",
            key="metrics.listen",
        )

    def config(self) -> MetricsConfig:
        address = _address(self.listen)
        if address is None:
            return MetricsConfig(per_identity=self.per_identity)
        return MetricsConfig(host=address[0], port=address[1], per_identity=self.per_identity)


class RotatorToml(Settings):
    """rotator.toml; relative paths are resolved against its directory."""

    database: Annotated[str, PlainValidator(check_database)] = setting(
        "rotator.db",
        "the event log + projections: an SQLite file (WAL), or a PostgreSQL database as a "
        '`"postgresql://..."` URL (see PostgreSQL)',
    )
    state_dir: Annotated[str | None, PATH] = setting(
        None,
        "where the files that go with the database are kept: the audit key and the anchor "
        "(unless set), the signer lock, the webhook secrets",
        "beside an SQLite database; the config's directory with PostgreSQL",
    )
    key_dir: Annotated[str, PATH] = setting(
        "keys", "private keys, one PKCS#8 PEM per key, mode 0600, directory 0700"
    )
    policy_dir: Annotated[str, PATH] = setting("policies", "`*.toml` policies, validated at start")
    tick_seconds: Annotated[float, number(0, MAX_TICK)] = setting(
        30.0,
        "how often the daemon looks for due work (it also wakes exactly when the next action "
        "is due); above 0, up to 86400",
    )
    log_format: Annotated[str, PlainValidator(_log_format)] = setting(
        "auto", "`json`, `console`, or `auto` (console on a TTY)"
    )
    dns: DnsSettings = required("the primary, the TSIG key and where DNS is looked up")
    targets: Targets = setting((), TARGETS_MEANING)
    signer: LegacySigner = setting(LegacySigner(), "the older layout")
    audit: AuditSettings = setting(AuditSettings(), "the audit log's key and anchor")
    keys: KeysSettings = setting(KeysSettings(), "where private keys are kept")
    safety: SafetySettings = setting(SafetySettings(), "the safety valve")
    metrics: MetricsSettings = setting(MetricsSettings(), "metrics and health endpoints")
    api: ApiSettings = setting(ApiSettings(), "the HTTP API")
    webhooks: WebhooksSettings = setting(WebhooksSettings(), "webhook deliveries")
    leadership: LeadershipSettings = setting(
        LeadershipSettings(), "which daemon leads when several share a database"
    )

    _beside = model_validator(mode="before")(signer_beside_targets)

    @field_validator("dns", mode="before")
    @classmethod
    def _dns_table(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise refuse("missing table; set primary, tsig_name, tsig_secret", key="[dns]")
        return value


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
    try:
        toml = RotatorToml.model_validate(data)
    except ValidationError as exc:
        raise refused(exc, cfg_path, data, RotatorToml) from None
    if redact(toml.database) != toml.database:  # a database password in the URL
        refuse_loose(
            cfg_path, "the config", readable_secret=True,
            move="the database password to a passfile (libpq's ~/.pgpass, or passfile=)",
        )  # fmt: skip
    if toml.dns.tsig_secret:
        refuse_loose(cfg_path, "the config", readable_secret=True)
    present = "targets" in toml.model_fields_set
    targets = target_configs(toml.signer, toml.targets if present else None, base)
    key_dir = resolve(toml.key_dir, base)
    check_target_dirs(cfg_path, targets, key_dir)
    check_target_groups(cfg_path, targets)
    db = database(toml.database, toml.state_dir, base)
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    default_key = (
        str(Path(credentials) / "audit.key")
        if credentials and (Path(credentials) / "audit.key").exists()
        else str(db.state_dir / "audit.key")
    )
    audit = toml.audit
    return Config(
        path=cfg_path,
        database=db,
        key_dir=key_dir,
        policy_dir=resolve(toml.policy_dir, base),
        tick_seconds=toml.tick_seconds,
        dns=toml.dns.config(base),
        targets=targets,
        audit=AuditConfig(
            key_file=resolve(audit.key_file or default_key, base),
            anchor=resolve(audit.anchor or str(db.state_dir / "anchor.log"), base),
        ),
        log_format=toml.log_format,
        metrics=toml.metrics.config(),
        api=toml.api.config(base),
        safety=toml.safety.config(),
        webhooks=toml.webhooks.config(),
        keys=toml.keys.config(base, cfg_path),
        leadership=toml.leadership.config(),
    )


@dataclass(frozen=True)
class SafetyConfig:
    """[safety]: the most a tick or command may revoke, replace or remove at once."""

    max_share: float = 0.25  # of the active keys
    min_keys: int = 10  # never fewer than this (a small fleet would hold every rotation)


def parse_safety(table: object, path: Path) -> SafetyConfig:
    """[safety] alone (a config's is read with the rest of it)."""
    return _table(SafetySettings, "safety", table, path).config()


def parse_metrics(table: object, path: Path) -> MetricsConfig:
    """[metrics] alone: listen = "127.0.0.1:9469" (absent or "": off)."""
    return _table(MetricsSettings, "metrics", table, path).config()


def _table(model: type[T], name: str, table: object, path: Path) -> T:
    try:
        return model.model_validate(table)
    except ValidationError as exc:
        r = first_refusal(exc, unknown_first=True)
        raise config_error(replace(r, loc=(name, *r.loc)), path, RotatorToml) from None


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
