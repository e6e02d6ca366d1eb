"""kind = "tinydns": djbdns's tinydns. rotator appends its records to the operator's data
file, builds data.cdb with tinydns-data and installs it on every server: local root
directories, or commands that get data.cdb on stdin (ssh)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import PlainValidator, model_validator

from ...domain.declared import flag, refuse, required, setting
from ..values import PATH, check_path, resolve
from .common import BackendConfig, BackendSettings

DELIVER_EXAMPLE = (
    '["ssh", "dns2", "cat > /etc/tinydns/root/data.cdb.tmp && mv -f '
    '/etc/tinydns/root/data.cdb.tmp /etc/tinydns/root/data.cdb"]'
)


@dataclass(frozen=True)
class TinydnsConfig(BackendConfig):
    directory: Path = Path()
    base_data: Path = Path()
    tinydns_data: Path = Path("/usr/sbin/tinydns-data")
    roots: tuple[Path, ...] = ()
    deliver: tuple[tuple[str, ...], ...] = ()
    tcp: bool = False


def _roots(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise refuse('must be a list of directories, e.g. ["/etc/tinydns/root"]')
    return tuple(check_path(v) for v in value)


def _deliver(value: Any) -> tuple[tuple[str, ...], ...]:
    if not isinstance(value, list) or not all(
        isinstance(c, list) and c and all(isinstance(a, str) and a for a in c) for c in value
    ):
        raise refuse(f"must be a list of commands, each a list of strings: [{DELIVER_EXAMPLE}]")
    return tuple(tuple(c) for c in value)


class TinydnsSettings(BackendSettings):
    directory: Annotated[str, PATH] = required(
        "rotator's own directory: its records (`rotator.data`), the `data` it builds from "
        "`base_data` and them, and `data.cdb`"
    )
    base_data: Annotated[str, PATH] = required(
        "the operator's data file: each zone's SOA and NS lines (`Z` and `&`, or `.`), and "
        "anything else tinydns serves; rotator's records are appended to it"
    )
    tinydns_data: Annotated[str, PATH] = setting(
        "/usr/sbin/tinydns-data", "the tinydns-data program", "`/usr/sbin/tinydns-data`"
    )
    roots: Annotated[tuple[str, ...], PlainValidator(_roots)] = setting(
        (), "tinydns root directories on this host: data.cdb is copied in and renamed", "none"
    )
    deliver: Annotated[tuple[tuple[str, ...], ...], PlainValidator(_deliver)] = setting(
        (),
        "commands that get data.cdb on stdin and install it (ssh to a server), each a list "
        "of strings",
        "none",
    )
    tcp: Annotated[bool, flag(lambda v: f"must be true or false, got {v!r}")] = setting(
        False,
        "axfrdns answers TCP at the same addresses; without it a record whose answer would "
        "not fit tinydns's 512-octet UDP reply is refused",
        "`false`",
    )

    @model_validator(mode="after")
    def _somewhere(self) -> TinydnsSettings:
        if not self.roots and not self.deliver:
            raise refuse(
                'give the servers: roots = ["/etc/tinydns/root"], or deliver = [command]',
                key="roots",
            )
        return self

    def config(self, base: Path) -> TinydnsConfig:
        return TinydnsConfig(
            **self.common(),
            directory=resolve(self.directory, base),
            base_data=resolve(self.base_data, base),
            tinydns_data=resolve(self.tinydns_data, base),
            roots=tuple(resolve(r, base) for r in self.roots),
            deliver=self.deliver,
            tcp=self.tcp,
        )
