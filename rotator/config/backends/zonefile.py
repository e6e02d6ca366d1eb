"""kind = "zonefile": servers that load zone files and take no UPDATE (NSD; BIND or Knot
with file-backed zones). rotator writes each zone's file from the operator's header and its
own records, checks it, and runs the reload command."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import model_validator

from ...domain.declared import refuse, required, setting
from ..targets import COMMAND
from ..values import PATH, resolve
from .common import BackendConfig, BackendSettings


@dataclass(frozen=True)
class ZoneFileConfig(BackendConfig):
    directory: Path = Path()
    header: str = ""  # a path; "{zone}" stands for the zone
    check: tuple[str, ...] = ()
    reload: tuple[str, ...] = ()


class ZoneFileSettings(BackendSettings):
    directory: Annotated[str, PATH] = required(
        "where rotator writes each zone's file, `<directory>/<zone>.zone`, for the server to "
        "load; rotator's alone"
    )
    header: Annotated[str, PATH] = required(
        "the operator's part of each zone: SOA (rotator sets its serial), NS and anything "
        "else. A file per zone (`headers/{zone}.zone`) or one for all (names relative to `@`)"
    )
    check: Annotated[tuple[str, ...], COMMAND] = setting(
        (),
        "run on each new file before it replaces the old one, `{zone}` and `{file}` filled "
        'in, e.g. `["nsd-checkzone", "{zone}", "{file}"]`',
        "none",
    )
    reload: Annotated[tuple[str, ...], COMMAND] = required(
        "run once the files are in place: with `{zone}` once per changed zone, e.g. "
        '`["nsd-control", "-c", "/etc/nsd/nsd.conf", "reload", "{zone}"]`; without, once '
        "per batch"
    )

    @model_validator(mode="after")
    def _reload(self) -> ZoneFileSettings:
        if not self.reload:
            raise refuse("empty; give the command that makes the server load the new files",
                         key="reload")  # fmt: skip
        if any("{file}" in a for a in self.reload):
            raise refuse("knows {zone} only; {file} is for check", key="reload")
        return self

    def config(self, base: Path) -> ZoneFileConfig:
        return ZoneFileConfig(
            **self.common(),
            directory=resolve(self.directory, base),
            header=str(resolve(self.header, base)),
            check=self.check,
            reload=self.reload,
        )
