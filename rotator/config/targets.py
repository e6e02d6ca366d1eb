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
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..domain.declared import Refusal, Settings, first_refusal, real, refuse, required, setting
from ..domain.errors import ConfigError
from .probes import SECONDS, ProbeConfig, ProbeSettings, one_of
from .values import PATH, config_error, resolve

__all__ = ["ProbeConfig", "TargetConfig", "parse_targets"]

FORMATS = ("opendkim", "rspamd", "exim", "kumomta", "json")
KEY_GRACE = 300.0
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
RELOAD_EXAMPLE = '["systemctl", "reload", "opendkim"]'


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


def _command(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        try:
            value = shlex.split(value)
        except ValueError as exc:  # an unclosed quote
            raise refuse(
                f"{value!r} cannot be split as a shell would: {str(exc).lower()}; "
                f"or give a list, e.g. {RELOAD_EXAMPLE}"
            ) from None
    if not isinstance(value, list) or not all(isinstance(a, str) and a for a in value):
        raise refuse(
            f"must be a command string or a list of non-empty strings, e.g. {RELOAD_EXAMPLE}"
        )
    return tuple(value)


COMMAND = PlainValidator(_command)
GRACE = real(lambda v: 0 <= v <= 86400, lambda v: f"a number of seconds from 0 to 86400, got {v!r}")


def _mode(key: bool) -> PlainValidator:
    def check(value: Any) -> int:
        if not isinstance(value, str) or not re.fullmatch(r"0?[0-7]{3}", value):
            raise refuse('give an octal mode as a string, e.g. "0640"')
        mode = int(value, 8)
        if key and mode & 0o007:
            raise refuse(f"{value} lets others read key material; drop the last digit")
        if mode & 0o003:
            raise refuse(f"{value} lets others write; drop the last digit")
        return mode

    return PlainValidator(check)


def _name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise refuse("lower-case letters, digits, hyphens")
    return value


def _algorithms(value: Any) -> tuple[str, ...]:
    algorithms = tuple(value) if isinstance(value, list) else ()
    if not algorithms or not all(a in ("rsa", "ed25519") for a in algorithms):
        raise refuse("algorithms: a list of rsa and/or ed25519", key="")
    return algorithms


class TargetSettings(Settings):
    """One [[targets]] table: a signer instance rotator keeps in step with the keys."""

    name: Annotated[str, PlainValidator(_name)] = required(
        "lower-case letters, digits, hyphens; unique. Events, `rotator status` and the "
        "emergency output name the target by it"
    )
    format: Annotated[str, one_of("format", FORMATS)] = required(
        "`opendkim`, `rspamd`, `exim`, `kumomta` or `json`: which files are written (below)"
    )
    directory: Annotated[str, PATH] = required(
        "where the signer reads the files; the tables name key files in `<directory>/keys/`. "
        "Never rotator's state directory (its `keys/` is rotator's key store): files in "
        "`<directory>/keys/` that the target does not list are wiped (after `key_grace`)"
    )
    algorithms: Annotated[tuple[str, ...], PlainValidator(_algorithms)] = setting(
        ("rsa", "ed25519"),
        'the keys this target gets; OpenDKIM takes exactly one, `["rsa"]` or `["ed25519"]`',
        '`["rsa", "ed25519"]`',
    )
    deliver: tuple[str, ...] = setting(
        (),
        '`"local"`: rotator writes `directory` itself. Otherwise a command (a list, or a '
        "string split as a shell would) that gets the files as a bundle of JSON lines on "
        "stdin and installs them: rotator's installer, run as the signer's user, on this "
        "host or over ssh",
        '`"local"`',
    )
    key_group: str = setting(
        "",
        "local only: the group of the files, which must exist on rotator's host when the "
        "config loads. It works if rotator's user is in that group, or if `directory` is "
        "setgid to it (new files inherit the group)",
        "none",
    )
    key_mode: Annotated[int, _mode(key=True)] = setting(
        0o640, "mode of the key files; never readable by others", '`"0640"`'
    )
    table_mode: Annotated[int, _mode(key=False)] = setting(
        0o640,
        "mode of the tables (names and paths, no key material); never writable by others",
        '`"0640"`',
    )
    reload: Annotated[tuple[str, ...], COMMAND] = setting(
        (),
        "command run once the files are in place, e.g. "
        '`["/usr/bin/systemctl", "reload", "rspamd.service"]`',
        "none",
    )
    timeout: Annotated[float, SECONDS] = setting(
        60.0, "seconds for the deliver and reload commands", "`60`"
    )
    probe: ProbeSettings = setting(
        ProbeSettings(),
        "how the signer is checked after each reload (below)",
        '`{ kind = "none" }`',
    )
    key_grace: Annotated[float, GRACE] = setting(
        KEY_GRACE,
        "seconds the file of a key that left the target's tables stays in `keys/` after the "
        "reload and probe that followed, for the signer's workers still on the old "
        "configuration (`0`: wiped right after that probe). Compromised keys are wiped at once",
        "`300`",
    )

    @model_validator(mode="before")
    @classmethod
    def _table(cls, raw: Any) -> Any:
        if not isinstance(raw, Mapping):
            raise refuse("must be a table", key="")
        return raw

    @model_validator(mode="after")
    def _one_for_opendkim(self) -> TargetSettings:
        if self.format == "opendkim" and len(self.algorithms) != 1:
            raise refuse(
                "an OpenDKIM instance signs one algorithm (SignatureAlgorithm is global): set "
                'algorithms = ["rsa"] or ["ed25519"] and run a second instance for the other',
                key="",
            )
        return self

    @field_validator("deliver", mode="plain")
    @classmethod
    def _deliver(cls, value: Any) -> tuple[str, ...]:
        if value == "local":
            return ()
        command = _command(value)
        if not command:
            raise refuse('empty; write "local", or the installer command')
        return command

    @field_validator("key_group", mode="plain")
    @classmethod
    def _key_group(cls, value: Any, info: ValidationInfo) -> str:
        if info.data.get("deliver"):
            raise refuse(
                "key_group applies to local targets only: the installer of a deliver command "
                "writes as its own user and group",
                key="",
            )
        if not isinstance(value, str):
            raise refuse(f'{value!r}: give a group name, e.g. "_rspamd"')
        return value

    def config(self, base: Path) -> TargetConfig:
        return TargetConfig(
            name=self.name,
            format=self.format,
            directory=resolve(self.directory, base),
            algorithms=self.algorithms,
            deliver=self.deliver,
            key_group=self.key_group,
            key_mode=self.key_mode,
            table_mode=self.table_mode,
            timeout=self.timeout,
            key_grace=self.key_grace,
            reload=self.reload,
            probe=ProbeConfig(
                self.probe.kind, self.probe.address, self.probe.url, self.probe.timeout
            ),
        )


class LegacySigner(Settings):
    """[signer], the older layout: one OpenDKIM target writing these two files."""

    key_table: Annotated[str, PATH] = setting(
        "opendkim/KeyTable", "older layout, without [[targets]]: the OpenDKIM KeyTable"
    )
    signing_table: Annotated[str, PATH] = setting(
        "opendkim/SigningTable", "older layout: the OpenDKIM SigningTable"
    )
    reload: Annotated[tuple[str, ...], COMMAND] = setting(
        (), "older layout: the command that reloads OpenDKIM", "none"
    )

    def config(self, base: Path) -> TargetConfig:
        key_table = resolve(self.key_table, base)
        return TargetConfig(
            name="opendkim",
            format="opendkim",
            directory=key_table.parent,
            algorithms=("rsa", "ed25519"),  # the tables of old configs held every key
            reload=self.reload,
            key_mode=0o600,
            table_mode=0o644,
            legacy_tables=(key_table, resolve(self.signing_table, base)),
        )


def _some(value: Any) -> Any:
    if not isinstance(value, list) or not value:
        raise refuse("give at least one signer target", key="[[targets]]")
    return value


def _unique(value: tuple[TargetSettings, ...]) -> tuple[TargetSettings, ...]:
    names = [t.name for t in value]
    if len(set(names)) != len(names):
        raise refuse("target names must be unique", key="[[targets]]")
    return value


Targets = Annotated[tuple[TargetSettings, ...], BeforeValidator(_some), AfterValidator(_unique)]
TARGETS_MEANING = "the signers rotator keeps in step: see Signer targets"


def signer_beside_targets(raw: Any) -> Any:
    if isinstance(raw, Mapping) and "targets" in raw and "signer" in raw:
        raise refuse(
            'ignored beside [[targets]]; remove it (a target of format = "opendkim" writes '
            "the same tables)",
            key="[signer]",
        )
    return raw


class TargetsSection(Settings):
    """The part of rotator.toml that names the signers; the rest is read elsewhere."""

    model_config = ConfigDict(extra="ignore")

    signer: LegacySigner = setting(LegacySigner(), "the older layout")
    targets: Targets = setting((), TARGETS_MEANING)

    _beside = model_validator(mode="before")(signer_beside_targets)


def target_configs(
    signer: LegacySigner, targets: tuple[TargetSettings, ...] | None, base: Path
) -> tuple[TargetConfig, ...]:
    """[[targets]] (None: absent), or the one target of an older [signer] table."""
    if targets is None:
        return (signer.config(base),)
    return tuple(t.config(base) for t in targets)


def parse_targets(data: Mapping[str, Any], source: Path, base: Path) -> tuple[TargetConfig, ...]:
    """[[targets]] of a config (already TOML-parsed); relative paths against `base`."""
    try:
        section = TargetsSection.model_validate(data)
    except ValidationError as exc:
        raise refused(exc, source, data, TargetsSection) from None
    present = "targets" in section.model_fields_set
    return target_configs(section.signer, section.targets if present else None, base)


def refused(
    exc: ValidationError, source: Path, data: Mapping[str, Any], model: type[BaseModel]
) -> ConfigError:
    """The one line of the first problem; one of a target names it by its name."""
    r = first_refusal(exc, unknown_first=True)
    if len(r.loc) < 2 or r.loc[0] != "targets" or not isinstance(r.loc[1], int):
        return config_error(r, source, model)
    return ConfigError(f"{source}: {target_where(r, data['targets'][r.loc[1]])}")


def target_where(r: Refusal, raw: Any) -> str:
    """`target mx1: format ...`, `target mx1.deliver: ...`, `target mx1: probe.url: ...`,
    or `targets[0].name: ...` when the target has no valid name to go by."""
    name = raw.get("name") if isinstance(raw, Mapping) else None
    ok = isinstance(name, str) and _NAME.match(name)
    where = f"target {name}" if ok else f"targets[{r.loc[1]}]"
    rest = [str(p) for p in r.loc[2:]]
    if r.kind == "unknown" and len(rest) == 1:
        return f"{where}: unknown setting {rest[0]!r}"
    key = r.key if r.key is not None else ".".join(rest)
    if not key:
        return f"{where}: {r.problem}"
    if key.startswith("probe"):
        return f"{where}: {key}: {r.problem}"
    return f"{where}.{key}: {r.problem}"
