"""Signer targets in rotator.toml: every MTA signer rotator keeps in step, each with its
format, where its files go, how they get there, how it reloads and how it is probed.

    [[targets]]
    name = "mx1-opendkim"                    # unique: letters, digits, hyphens
    format = "opendkim"                      # opendkim | rspamd | exim | kumomta | json
    directory = "/var/lib/opendkim/rotator"  # where the signer reads the files (its tables
                                             # name the keys there)
    algorithms = ["rsa"]                     # the keys it gets (OpenDKIM: exactly one)
    deliver = "local"                        # rotator writes `directory` itself, or a command
                                             # that gets the files on stdin and installs them
                                             # (as the signer's user, on another host...)
    key_group = "_rspamd"                    # local: group of the files (else the directory's)
    key_mode = "0640"                        # local: mode of key files; tables: table_mode
    reload = ["systemctl", "reload", "opendkim"]
    probe = { kind = "milter", address = "inet:8891@127.0.0.1" }   # or rspamd (url), none
    key_grace = 300                          # seconds a departed key's file stays after the
                                             # signer reloaded and passed its probe

A config with the older `[signer]` table (key_table, signing_table, reload) and no
[[targets]] has one OpenDKIM target writing those two files and no probe. Every setting is
checked here, a probe's address or URL with the parse its client connects with
(rotator.config.addresses): a bad one stops the config loading, not the first activation.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..domain.errors import ConfigError
from .addresses import AddressError, http_url, milter_address
from .values import known_keys, path_value

FORMATS = ("opendkim", "rspamd", "exim", "kumomta", "json")
PROBES = ("milter", "rspamd", "none")
KEY_GRACE = 300.0
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
MILTER_EXAMPLE = '"inet:8891@127.0.0.1" or "unix:/run/opendkim/opendkim.sock"'
RSPAMD_EXAMPLE = '"http://127.0.0.1:11333"'


@dataclass(frozen=True)
class ProbeConfig:
    kind: str = "none"  # milter | rspamd | none
    address: str = ""  # milter: inet:PORT@HOST, HOST:PORT or unix:/path
    url: str = ""  # rspamd: the normal worker, e.g. http://127.0.0.1:11333
    timeout: float = 10.0  # a reloading signer is probed again until this runs out


@dataclass(frozen=True)
class TargetConfig:
    name: str
    format: str
    directory: Path
    algorithms: tuple[str, ...] = ("rsa", "ed25519")
    deliver: tuple[str, ...] = ()  # empty: local (rotator writes `directory` itself)
    key_group: str = ""
    key_mode: int = 0o640
    table_mode: int = 0o640
    reload: tuple[str, ...] = ()
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    timeout: float = 60.0  # seconds for the deliver and reload commands
    # seconds a key's file stays after its key left the tables, counted from the reload and
    # probe that followed: a milter connection or rspamd worker opened before the reload
    # still reads the old configuration (an SMTP session may last minutes)
    key_grace: float = KEY_GRACE
    # the legacy [signer] table's exact file names (KeyTable / SigningTable paths)
    legacy_tables: tuple[Path, Path] | None = None

    @property
    def local(self) -> bool:
        return not self.deliver


def _command(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        try:
            value = shlex.split(value)
        except ValueError as exc:  # an unclosed quote
            raise ConfigError(
                f"{where}: {value!r} cannot be split as a shell would: {str(exc).lower()}; "
                'or give a list, e.g. ["systemctl", "reload", "opendkim"]'
            ) from None
    if not isinstance(value, list) or not all(isinstance(a, str) and a for a in value):
        raise ConfigError(
            f"{where}: must be a command string or a list of non-empty strings, "
            'e.g. ["systemctl", "reload", "opendkim"]'
        )
    return tuple(value)


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        raise ConfigError(f"{where}: a number of seconds from 0 to 3600, got {value!r}")
    return float(value)


def _grace(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 86400:
        raise ConfigError(f"{where}: a number of seconds from 0 to 86400, got {value!r}")
    return float(value)


def _mode(value: Any, where: str, key: bool = True) -> int:
    if not isinstance(value, str) or not re.fullmatch(r"0?[0-7]{3}", value):
        raise ConfigError(f'{where}: give an octal mode as a string, e.g. "0640"')
    mode = int(value, 8)
    if key and mode & 0o007:
        raise ConfigError(f"{where}: {value} lets others read key material; drop the last digit")
    if mode & 0o003:
        raise ConfigError(f"{where}: {value} lets others write; drop the last digit")
    return mode


def parse_targets(data: Mapping[str, Any], source: Path, base: Path) -> tuple[TargetConfig, ...]:
    """[[targets]] of a config (already TOML-parsed); relative paths against `base`."""

    def path(raw: Any, where: str) -> Path:
        return path_value(raw, base, source, where)

    raw_targets = data.get("targets")
    if raw_targets is None:
        return (legacy_target(data.get("signer", {}), source, path),)
    if "signer" in data:
        raise ConfigError(
            f"{source}: [signer]: ignored beside [[targets]]; remove it (a target of "
            'format = "opendkim" writes the same tables)'
        )
    if not isinstance(raw_targets, list) or not raw_targets:
        raise ConfigError(f"{source}: [[targets]]: give at least one signer target")
    out: list[TargetConfig] = []
    for i, t in enumerate(raw_targets):
        where = f"targets[{i}]"
        if not isinstance(t, Mapping):
            raise ConfigError(f"{source}: {where}: must be a table")
        name = t.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{source}: {where}.name: lower-case letters, digits, hyphens")
        where = f"target {name}"
        fmt = t.get("format")
        if fmt not in FORMATS:
            raise ConfigError(f"{source}: {where}: format {fmt!r}: use one of {', '.join(FORMATS)}")
        algorithms = t.get("algorithms", ["rsa", "ed25519"])
        algorithms = tuple(algorithms) if isinstance(algorithms, list) else ()
        if not algorithms or not set(algorithms) <= {"rsa", "ed25519"}:
            raise ConfigError(f"{source}: {where}: algorithms: a list of rsa and/or ed25519")
        if fmt == "opendkim" and len(algorithms) != 1:
            raise ConfigError(
                f"{source}: {where}: an OpenDKIM instance signs one algorithm "
                '(SignatureAlgorithm is global): set algorithms = ["rsa"] or ["ed25519"] and '
                "run a second instance for the other"
            )
        deliver = t.get("deliver", "local")
        if deliver != "local" and "key_group" in t:
            raise ConfigError(
                f"{source}: {where}: key_group applies to local targets only: the installer "
                "of a deliver command writes as its own user and group"
            )
        key_group = t.get("key_group", "")
        if not isinstance(key_group, str):
            raise ConfigError(
                f'{source}: {where}.key_group: {key_group!r}: give a group name, e.g. "_rspamd"'
            )
        command = () if deliver == "local" else _command(deliver, f"{source}: {where}.deliver")
        if deliver != "local" and not command:
            raise ConfigError(
                f'{source}: {where}.deliver: empty; write "local", or the installer command'
            )
        unknown = set(t) - {
            "name", "format", "directory", "algorithms", "deliver", "key_group", "key_mode",
            "table_mode", "reload", "probe", "timeout", "key_grace",
        }  # fmt: skip
        if unknown:
            raise ConfigError(f"{source}: {where}: unknown setting {sorted(unknown)[0]!r}")
        out.append(
            TargetConfig(
                name=name,
                format=fmt,
                directory=path(t.get("directory"), f"{where}.directory"),
                algorithms=algorithms,
                deliver=command,
                key_group=key_group,
                key_mode=_mode(t.get("key_mode", "0640"), f"{source}: {where}.key_mode"),
                table_mode=_mode(
                    t.get("table_mode", "0640"), f"{source}: {where}.table_mode", key=False
                ),
                timeout=_seconds(t.get("timeout", 60.0), f"{source}: {where}.timeout"),
                key_grace=_grace(t.get("key_grace", KEY_GRACE), f"{source}: {where}.key_grace"),
                reload=_command(t.get("reload", []), f"{source}: {where}.reload"),
                probe=_probe(t.get("probe", {}), f"{source}: {where}"),
            )
        )
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: [[targets]]: target names must be unique")
    return tuple(out)


def _probe(raw: Any, where: str) -> ProbeConfig:
    """The probe, its address or URL checked with the parse its client uses."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f'{where}: probe: must be a table, e.g. {{ kind = "milter", ... }}')
    kind = raw.get("kind", "none")
    if kind not in PROBES:
        raise ConfigError(f"{where}: probe.kind {kind!r}: use one of {', '.join(PROBES)}")
    own = {"milter": "address", "rspamd": "url", "none": ""}
    for key in sorted(set(raw) - {"kind", "timeout", own[kind]}):
        use = f"it takes {own[kind]} and timeout" if own[kind] else "set kind to probe"
        raise ConfigError(f"{where}: probe.{key}: not a setting of a {kind} probe; {use}")
    probe = ProbeConfig(
        kind=kind,
        address=_probe_text(raw, "address", where),
        url=_probe_text(raw, "url", where),
        timeout=_seconds(raw.get("timeout", 10.0), f"{where}: probe.timeout"),
    )
    if kind == "milter":
        if not probe.address:
            raise ConfigError(f"{where}: a milter probe needs address, e.g. {MILTER_EXAMPLE}")
        try:
            milter_address(probe.address)
        except AddressError as exc:
            raise ConfigError(
                f'{where}: probe.address "{probe.address}" is not a milter address: {exc}; '
                f"write e.g. {MILTER_EXAMPLE}"
            ) from None
    if kind == "rspamd":
        if not probe.url:
            raise ConfigError(f"{where}: an rspamd probe needs url, e.g. {RSPAMD_EXAMPLE}")
        try:
            http_url(probe.url)
        except AddressError as exc:
            raise ConfigError(
                f'{where}: probe.url "{probe.url}" is not an http(s) URL: {exc}; '
                f"write e.g. {RSPAMD_EXAMPLE}"
            ) from None
    return probe


def _probe_text(raw: Mapping[str, Any], key: str, where: str) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str):
        raise ConfigError(f"{where}: probe.{key}: {value!r} is not a string")
    return value.strip()


def legacy_target(signer: Any, source: Path, path: Any) -> TargetConfig:
    if not isinstance(signer, Mapping):
        raise ConfigError(f"{source}: [signer]: must be a table")
    known_keys(signer, ("key_table", "signing_table", "reload"), source, "signer")
    key_table = path(signer.get("key_table", "opendkim/KeyTable"), "signer.key_table")
    signing_table = path(
        signer.get("signing_table", "opendkim/SigningTable"), "signer.signing_table"
    )
    return TargetConfig(
        name="opendkim",
        format="opendkim",
        directory=key_table.parent,
        algorithms=("rsa", "ed25519"),  # the tables of old configs held every key
        reload=_command(signer.get("reload", []), f"{source}: signer.reload"),
        key_mode=0o600,
        table_mode=0o644,
        legacy_tables=(key_table, signing_table),
    )
