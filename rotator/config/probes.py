"""How a signer target is probed once it reloaded: a milter connection or an rspamd
request. The address or URL is checked when the config loads, with the parse the probe's
client connects with (rotator.config.addresses)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import PlainValidator, ValidationInfo, model_validator

from ..domain.declared import Settings, real, refuse, setting
from .addresses import AddressError, http_url, milter_address

PROBES = ("milter", "rspamd", "none")
MILTER_EXAMPLE = '"inet:8891@127.0.0.1" or "unix:/run/opendkim/opendkim.sock"'
RSPAMD_EXAMPLE = '"http://127.0.0.1:11333"'
SECONDS = real(lambda v: 0 < v <= 3600, lambda v: f"a number of seconds from 0 to 3600, got {v!r}")


@dataclass(frozen=True)
class ProbeConfig:
    kind: str = "none"  # milter | rspamd | none
    address: str = ""  # milter: inet:PORT@HOST, HOST:PORT or unix:/path
    url: str = ""  # rspamd: the normal worker, e.g. http://127.0.0.1:11333
    timeout: float = 10.0  # a reloading signer is probed again until this runs out


def one_of(what: str, choices: tuple[str, ...], key: str = "") -> PlainValidator:
    def check(value: Any) -> str:
        if value not in choices:
            raise refuse(f"{what} {value!r}: use one of {', '.join(choices)}", key=key)
        return str(value)

    return PlainValidator(check)


def _probe_text(value: Any, info: ValidationInfo) -> str:
    if not isinstance(value, str):
        raise refuse(f"{value!r} is not a string", key=f"probe.{info.field_name}")
    return value.strip()


class ProbeSettings(Settings):
    """How a target is probed after it reloaded; its address or URL is checked with the
    parse its client connects with."""

    kind: Annotated[str, one_of("probe.kind", PROBES)] = setting(
        "none", "`milter`, `rspamd` or `none`: how the signer is probed after each reload"
    )
    address: Annotated[str, PlainValidator(_probe_text)] = setting(
        "",
        "milter: `inet:8891@127.0.0.1` (also `inet6:PORT@HOST`, `HOST:PORT`, `[V6]:PORT`, "
        "`unix:/absolute/path`)",
        "-",
    )
    url: Annotated[str, PlainValidator(_probe_text)] = setting(
        "",
        "rspamd: its normal worker, an `http://` or `https://` URL, e.g. `http://127.0.0.1:11333`",
        "-",
    )
    timeout: Annotated[float, SECONDS] = setting(
        10.0, "seconds the retries while the signer reloads may take"
    )

    @model_validator(mode="before")
    @classmethod
    def _settings_of_its_kind(cls, raw: Any) -> Any:
        if not isinstance(raw, Mapping):
            raise refuse('must be a table, e.g. { kind = "milter", ... }', key="probe")
        kind = raw.get("kind", "none")
        own = {"milter": "address", "rspamd": "url", "none": ""}.get(kind)
        if own is None:  # before its settings, which depend on it
            raise refuse(f"probe.kind {kind!r}: use one of {', '.join(PROBES)}", key="")
        for key in sorted(set(raw) - {"kind", "timeout", own}):
            use = f"it takes {own} and timeout" if own else "set kind to probe"
            raise refuse(f"not a setting of a {kind} probe; {use}", key=f"probe.{key}")
        return raw

    @model_validator(mode="after")
    def _reachable(self) -> ProbeSettings:
        if self.kind == "milter":
            if not self.address:
                raise refuse(f"a milter probe needs address, e.g. {MILTER_EXAMPLE}", key="")
            try:
                milter_address(self.address)
            except AddressError as exc:
                raise refuse(
                    f'probe.address "{self.address}" is not a milter address: {exc}; '
                    f"write e.g. {MILTER_EXAMPLE}",
                    key="",
                ) from None
        if self.kind == "rspamd":
            if not self.url:
                raise refuse(f"an rspamd probe needs url, e.g. {RSPAMD_EXAMPLE}", key="")
            try:
                http_url(self.url)
            except AddressError as exc:
                raise refuse(
                    f'probe.url "{self.url}" is not an http(s) URL: {exc}; '
                    f"write e.g. {RSPAMD_EXAMPLE}",
                    key="",
                ) from None
        return self
