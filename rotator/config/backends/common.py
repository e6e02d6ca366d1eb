"""What every `[[dns.backends]]` entry has: its name, kind, the zones it serves, and where
its zones are verified; and the secret files backends read their credentials from."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import PlainValidator

from ...domain.declared import Settings, refuse, required, setting
from ...domain.errors import ConfigError, InputError
from ...domain.names import normalize_domain
from ..values import ip_hostport, number, refuse_loose

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
MAX_TIMEOUT = 300.0
TSIG_ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512")  # nothing weaker


@dataclass(frozen=True)
class BackendConfig:
    name: str
    kind: str
    zones: tuple[str, ...]  # lower case, no trailing dot
    nameservers: tuple[str, ...]  # "ip:port" to verify these zones against (empty: discovery)
    timeout: float


def _name(value: Any) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise refuse('missing or not a name of a-z, 0-9, "-" and "_", e.g. "pdns"')
    return value


def _zones(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise refuse('give the zones it serves, e.g. ["dkim.esp.example"] (subzones included)')
    out = []
    for zone in value:
        try:
            out.append(normalize_domain(zone))
        except InputError as exc:
            raise refuse(f"{zone!r}: {exc}") from None
    if len(set(out)) != len(out):
        raise refuse("a zone is listed twice")
    return tuple(out)


def _nameservers(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise refuse('must be a list of "ip:port", e.g. ["192.0.2.53"]')
    for v in value:
        ip_hostport(v, 53, "192.0.2.53")
    return tuple(value)


class BackendSettings(Settings):
    """One [[dns.backends]] entry; each kind adds its own settings."""

    name: Annotated[str, PlainValidator(_name)] = required(
        "the backend's name, in messages and the audit log"
    )
    kind: str = required("what it talks to: see DNS backends")
    zones: Annotated[tuple[str, ...], PlainValidator(_zones)] = required(
        "the zones it serves: each name and every zone under it (the longest match wins; "
        "zones no backend names go to `[dns] primary`)"
    )
    nameservers: Annotated[tuple[str, ...], PlainValidator(_nameservers)] = setting(
        (),
        '`["ip:port"]`: verify these zones against exactly these addresses',
        "discovery",
    )
    timeout: Annotated[float, number(0, MAX_TIMEOUT)] = setting(
        10.0, "seconds per request to the backend (above 0, up to 300)"
    )

    def config(self, base: Path) -> BackendConfig:
        raise NotImplementedError

    def common(self) -> dict[str, Any]:
        """The shared fields, for a kind's own config dataclass."""
        return {
            "name": self.name,
            "kind": self.kind,
            "zones": self.zones,
            "nameservers": self.nameservers,
            "timeout": self.timeout,
        }


def read_secret(path: Path, what: str) -> str:
    """A credential from its file, read when it is about to be used: the file must not be
    readable by others (as the TSIG secret file). ConfigError saying what to fix."""
    refuse_loose(path, what, readable_secret=True, move="")
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{path}: {what}: cannot read it: {exc.strerror}") from None
    if not text:
        raise ConfigError(f"{path}: {what} is empty; write the credential into it")
    return text
