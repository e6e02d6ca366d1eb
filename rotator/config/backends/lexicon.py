"""kind = "lexicon": any DNS provider dns-lexicon has (Cloudflare, Gandi, OVH, ...), its
options in a credentials file; and how that file is read."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import PlainValidator

from ...domain.declared import refuse, required, setting
from ...domain.errors import ConfigError
from ..values import PATH, resolve
from .common import BackendConfig, BackendSettings, read_secret

PROVIDER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
TXT_FORMATS = ("auto", "quoted", "inner", "whole")
ENV_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


@dataclass(frozen=True)
class LexiconConfig(BackendConfig):
    provider: str = ""
    credentials_file: Path = Path()
    txt_format: str = "auto"


def _provider(value: Any) -> str:
    if not isinstance(value, str) or not PROVIDER.match(value):
        raise refuse(
            'give the name of a dns-lexicon provider, as `lexicon --help` lists it, e.g. "gandi"'
        )
    return value


def _txt_format(value: Any) -> str:
    if value not in TXT_FORMATS:
        raise refuse(f"{value!r} is not one; use one of {', '.join(TXT_FORMATS)}")
    return str(value)


class LexiconSettings(BackendSettings):
    provider: Annotated[str, PlainValidator(_provider)] = required(
        "the dns-lexicon provider (its name, e.g. `cloudflare`, `gandi`, `powerdns`): see "
        "DNS backends for which were tested"
    )
    credentials_file: Annotated[str, PATH] = required(
        "the provider's options (`auth_token`, ...) as TOML, or `KEY=value` lines as "
        "lexicon's environment variables (not readable by others)"
    )
    txt_format: Annotated[str, PlainValidator(_txt_format)] = setting(
        "auto",
        "how a record longer than 255 octets is handed to the provider: `quoted` "
        '(`"..." "..."`), `inner` (`..." "...`, the provider adds the outer quotes), '
        "`whole` (one string: the provider splits it); `auto` picks by provider",
    )

    def config(self, base: Path) -> LexiconConfig:
        return LexiconConfig(
            **self.common(),
            provider=self.provider,
            credentials_file=resolve(self.credentials_file, base),
            txt_format=self.txt_format,
        )


def provider_options(path: Path, provider: str, what: str) -> dict[str, Any]:
    """The provider's options from `path`: TOML keys, or KEY=value lines. Names are taken
    as lexicon's environment variables write them too (LEXICON_GANDI_AUTH_TOKEN is
    auth_token). ConfigError names the file and the line, never a value."""
    text = read_secret(path, what)
    try:
        raw: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        raw = _env_lines(text, path, what)
    prefix = f"lexicon_{provider}_"
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(value, str | int | float | bool):
            raise ConfigError(f"{path}: {what}: {key}: give a string or a number, not a table")
        name = key.lower()
        out[name[len(prefix) :] if name.startswith(prefix) else name] = value
    return out


def _env_lines(text: str, path: Path, what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = ENV_LINE.match(line)
        if match is None:
            raise ConfigError(
                f"{path}: {what}: line {number} is neither TOML nor KEY=value; write "
                'e.g. auth_token = "..." (the value is not shown here)'
            )
        value = match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[match.group(1)] = value
    return out
