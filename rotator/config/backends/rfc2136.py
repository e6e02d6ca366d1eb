"""kind = "rfc2136": another primary that takes UPDATEs with TSIG (as `[dns]`), for zones
kept on a second BIND or Knot."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import PlainValidator

from ...domain.declared import refuse, required, setting
from ..values import PATH, ip_hostport, resolve
from .common import TSIG_ALGORITHMS, BackendConfig, BackendSettings


@dataclass(frozen=True)
class Rfc2136Config(BackendConfig):
    primary: str = ""
    port: int = 53
    tsig_name: str = ""
    tsig_secret_file: Path = Path()
    tsig_algorithm: str = "hmac-sha256"


def _primary(value: Any) -> tuple[str, int]:
    if not isinstance(value, str) or not value:
        raise refuse('missing; e.g. "192.0.2.53:53"')
    return ip_hostport(value, 53, "192.0.2.53:53")


def _algorithm(value: Any) -> str:
    if value not in TSIG_ALGORITHMS:
        raise refuse(f"{value!r} is not allowed; use one of {', '.join(TSIG_ALGORITHMS)}")
    return str(value)


def _tsig_name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise refuse("missing; the TSIG key name the primary knows")
    return value


class Rfc2136Settings(BackendSettings):
    primary: Annotated[tuple[str, int], PlainValidator(_primary)] = required(
        "`ip:port` of the primary that takes the UPDATEs"
    )
    tsig_name: Annotated[str, PlainValidator(_tsig_name)] = required("the TSIG key name")
    tsig_secret_file: Annotated[str, PATH] = required(
        "the file holding the base64 TSIG secret (not readable by others)"
    )
    tsig_algorithm: Annotated[str, PlainValidator(_algorithm)] = setting(
        "hmac-sha256", "the TSIG algorithm"
    )

    def config(self, base: Path) -> Rfc2136Config:
        return Rfc2136Config(
            **self.common(),
            primary=self.primary[0],
            port=self.primary[1],
            tsig_name=self.tsig_name,
            tsig_secret_file=resolve(self.tsig_secret_file, base),
            tsig_algorithm=self.tsig_algorithm,
        )
