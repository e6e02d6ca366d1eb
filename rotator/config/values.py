"""The checks settings of rotator.toml go through when the config loads (numbers in their
range, ports, paths, addresses), as validators of its models, and the one line a refusal
becomes: the file, the setting, what is wrong and how to write it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, PlainValidator

from ..domain.declared import Refusal, real, refuse, whole
from ..domain.errors import ConfigError
from .addresses import AddressError, is_ip, split_hostport


def fail(path: Path, key: str, problem: str) -> ConfigError:
    return ConfigError(f"{path}: {key}: {problem}")


def number(low: float, high: float) -> PlainValidator:
    """A finite number with low < value <= high."""
    return real(
        lambda v: low < v <= high, lambda v: f"{v!r}: give a number above {low:g}, up to {high:g}"
    )


PORT = whole(
    lambda v: 0 < v < 65536, lambda v: f"{v!r}: give a port number from 1 to 65535, e.g. 53"
)


def check_path(raw: Any) -> str:
    """A path setting, as written; relative to the config file's directory (see `resolve`)."""
    if not isinstance(raw, str) or not raw:
        raise refuse("missing or not a string path")
    if "\0" in raw:
        raise refuse(f"{raw!r} holds a NUL character, which no path may hold")
    return raw


PATH = PlainValidator(check_path)


def resolve(raw: str, base: Path) -> Path:
    p = Path(raw)
    return p if p.is_absolute() else base / p


def hostport(
    text: str, default_port: int, path: Path | None = None, key: str = "address"
) -> tuple[str, int]:
    """'1.2.3.4', '1.2.3.4:53', '[::1]:53', '::1' -> (host, port); ConfigError naming `key`."""
    try:
        return split_hostport(text, default_port)
    except AddressError as exc:
        raise ConfigError(f"{path or ''}: {key}: {text!r}: {exc}") from None


def ip_hostport(text: object, default_port: int, example: str) -> tuple[str, int]:
    """An address DNS messages are sent to: an IP address (dnspython takes no host names)."""
    if not isinstance(text, str) or not text:
        raise refuse(f'give an "ip" or "ip:port" string, e.g. "{example}"')
    try:
        host, port_ = split_hostport(text, default_port)
    except AddressError as exc:
        raise refuse(f"{text!r}: {exc}") from None
    if not is_ip(host):
        raise refuse(
            f"{text!r}: {host!r} is not an IP address (DNS messages go to an address, not "
            f'a name); write e.g. "{example}"'
        )
    return host, port_


def config_error(r: Refusal, path: Path, model: type[BaseModel]) -> ConfigError:
    """The config's one line for a problem: `path: dotted.key: problem`."""
    return fail(path, r.key if r.key is not None else dotted(r), problem_of(r, model))


def dotted(r: Refusal) -> str:
    """dns.timeout; a table that is no table is [audit]; list positions are left out."""
    names = [str(part) for part in r.loc if isinstance(part, str)]
    if r.kind == "table":
        return f"[{'.'.join(names)}]"
    return ".".join(names)


def problem_of(r: Refusal, model: type[BaseModel]) -> str:
    if r.kind == "table":
        return "must be a table"
    if r.kind != "unknown":
        return r.problem
    for part in r.loc[:-1]:  # down to the table the unknown key is in
        if isinstance(part, str):
            inner: Any = model.model_fields[part].annotation
            model = get_args(inner)[0] if get_args(inner) else inner
    # [metrics] and [safety] list their keys as they are declared, the others sorted
    word = getattr(model, "UNKNOWN", "")
    keys = list(model.model_fields) if word else sorted(model.model_fields)
    return f"{word or 'unknown setting'}; use {', '.join(keys)}"


def refuse_loose(
    path: Path,
    what: str,
    readable_secret: bool = False,
    move: str = "the secret to dns.tsig_secret_file",
) -> None:
    """A file that decides what rotator runs or where it writes (config, policies) must not
    be writable by group or others; one holding a secret must not be readable by others."""
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return
    if mode & 0o022:
        raise ConfigError(
            f"{path}: {what} is writable by group or others (mode {mode:04o}); chmod go-w {path}"
        )
    if readable_secret and mode & 0o004:
        raise ConfigError(
            f"{path}: holds a secret but is readable by others (mode {mode:04o}); "
            f"chmod o-r {path}" + (f", or move {move}" if move else "")
        )
