"""[api]: where the daemon serves the provisioning API, and how it may be reached. A
non-loopback address carries bearer tokens and customers' state: it needs TLS (tls_cert and
tls_key) or an explicit allow_plain_remote (a TLS-terminating proxy in front)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import PlainValidator, model_validator

from ..domain.declared import Settings, flag, refuse, setting
from .addresses import AddressError, check_host, is_loopback, split_hostport
from .values import PATH, resolve

DEFAULT_API_PORT = 8469
BOOL = flag(lambda v: f"must be true or false, got {v!r}")


@dataclass(frozen=True)
class ApiConfig:
    host: str = ""  # "": off
    port: int = DEFAULT_API_PORT
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.host)

    @property
    def listen(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls_cert else 'http'}://{self.listen}"


def address(listen: str) -> tuple[str, int] | None:
    """(host, port) of [api] listen, None when it is off."""
    if not listen.strip():
        return None
    try:
        host, port = split_hostport(listen.strip(), DEFAULT_API_PORT)
        check_host(host)
    except AddressError as exc:
        raise refuse(f'{listen.strip()!r}: {exc}; write e.g. "127.0.0.1:8469"') from None
    return host, port


def _listen(value: Any) -> str:
    if not isinstance(value, str):
        raise refuse('must be a string, e.g. "127.0.0.1:8469"')
    address(value)
    return value


class ApiSettings(Settings):
    UNKNOWN: ClassVar[str] = "unknown key"

    listen: Annotated[str, PlainValidator(_listen)] = setting(
        "",
        '`"127.0.0.1:8469"`: where the daemon serves the HTTP API under `/v1` (see HTTP API)',
        "off",
    )
    tls_cert: Annotated[str, PATH] = setting(
        "", "PEM certificate chain: the API speaks HTTPS (with tls_key)", "none"
    )
    tls_key: Annotated[str, PATH] = setting("", "PEM private key of tls_cert", "none")
    allow_plain_remote: Annotated[bool, BOOL] = setting(
        False, "serve plain HTTP on an address that is not loopback (TLS ends in a proxy)"
    )

    @model_validator(mode="after")
    def _protected(self) -> ApiSettings:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise refuse("give tls_cert and tls_key together", key="api.tls_key")
        found = address(self.listen)
        if found is None or self.tls_cert or self.allow_plain_remote or is_loopback(found[0]):
            return self
        raise refuse(
            f"{self.listen!r} is not a loopback address, and bearer tokens would cross the "
            "network in the clear: set api.tls_cert and api.tls_key, or api.allow_plain_remote "
            "= true (TLS ends in a proxy in front)",
            key="api.listen",
        )

    def config(self, base: Path) -> ApiConfig:
        found = address(self.listen)
        if found is None:
            return ApiConfig()
        return ApiConfig(
            host=found[0],
            port=found[1],
            tls_cert=resolve(self.tls_cert, base) if self.tls_cert else None,
            tls_key=resolve(self.tls_key, base) if self.tls_key else None,
        )
