"""The checks every setting of rotator.toml goes through when the config loads: numbers in
their range, ports, paths, addresses, and no key the reader does not know. Each refusal is
one line naming the file, the setting, what is wrong and how to write it."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from ..domain.errors import ConfigError
from .addresses import AddressError, is_ip, split_hostport


def fail(path: Path, key: str, problem: str) -> ConfigError:
    return ConfigError(f"{path}: {key}: {problem}")


def table(value: object, path: Path, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise fail(path, key, f"must be a table, got {value!r}")
    return value


def known_keys(values: Mapping[str, Any], known: Collection[str], path: Path, where: str) -> None:
    """A misspelt setting would otherwise be ignored and its default used, unnoticed."""
    unknown = sorted(set(values) - set(known))
    if unknown:
        name = f"{where}.{unknown[0]}" if where else unknown[0]
        raise fail(path, name, f"unknown setting; use {', '.join(sorted(known))}")


def number(value: object, path: Path, key: str, low: float, high: float) -> float:
    """A finite number with low < value <= high."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not low < value <= high
    ):
        raise fail(path, key, f"{value!r}: give a number above {low:g}, up to {high:g}")
    return float(value)


def port(value: object, path: Path, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise fail(path, key, f"{value!r}: give a port number from 1 to 65535, e.g. 53")
    return value


def path_value(raw: object, base: Path, source: Path, key: str) -> Path:
    """A path setting; relative to the config file's directory."""
    if not isinstance(raw, str) or not raw:
        raise fail(source, key, "missing or not a string path")
    if "\0" in raw:
        raise fail(source, key, f"{raw!r} holds a NUL character, which no path may hold")
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


def ip_hostport(
    text: object, default_port: int, path: Path, key: str, example: str
) -> tuple[str, int]:
    """An address DNS messages are sent to: an IP address (dnspython takes no host names)."""
    if not isinstance(text, str) or not text:
        raise fail(path, key, f'give an "ip" or "ip:port" string, e.g. "{example}"')
    host, port_ = hostport(text, default_port, path, key)
    if not is_ip(host):
        raise fail(
            path,
            key,
            f"{text!r}: {host!r} is not an IP address (DNS messages go to an address, not "
            f'a name); write e.g. "{example}"',
        )
    return host, port_


def refuse_loose(path: Path, what: str, readable_secret: bool = False) -> None:
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
            f"chmod o-r {path}, or move the secret to dns.tsig_secret_file"
        )
