"""Addresses as rotator.toml writes them, parsed in one place: the config checks every one
when it loads, and the adapters that connect to them use the same parse. Each problem is
an AddressError whose text says what is wrong with the value (the caller names the
setting and how to write it)."""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse

from ..domain.errors import InputError
from ..domain.names import normalize_domain

MILTER_FORMS = "inet:PORT@HOST, inet6:PORT@HOST, HOST:PORT, [IPV6]:PORT or unix:/path"
UNIX_PATH_MAX = 107  # sun_path holds 108 bytes with its terminating NUL (Linux)

MilterTarget = tuple[int, str | tuple[str, int]]  # (address family, path or (host, port))


class AddressError(ValueError):
    """What is wrong with an address, in words a setting's error can quote."""


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_host(host: str) -> str:
    """An IP address, localhost, or a host name DNS can carry (IDNA, 1-63 octet labels)."""
    if is_ip(host) or host == "localhost":
        return host
    try:
        normalize_domain(host)
    except InputError:
        raise AddressError(f"the host {host!r} is neither an IP address nor a host name") from None
    return host


def port_of(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise AddressError(f"invalid port {text!r} (a number from 1 to 65535)")
    return int(text)


def split_hostport(text: str, default_port: int) -> tuple[str, int]:
    """'1.2.3.4', '1.2.3.4:53', '[::1]:53', '::1', 'host:53' -> (host, port)."""
    host, port = text, default_port
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise AddressError("the IPv6 address has no closing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise AddressError(f"{rest!r} after ']' is not ':PORT'")
        if rest:
            port = port_of(rest[1:])
    elif text.count(":") == 1:
        host, p = text.split(":")
        port = port_of(p)
    if not host:
        raise AddressError("it has no host")
    return host, port


def milter_address(address: str) -> MilterTarget:
    """inet:PORT@HOST, inet6:PORT@HOST, HOST:PORT, [V6]:PORT, unix:/path, local:/path, /path
    -> (family, target) for socket.connect."""
    addr = address.strip()
    for prefix in ("unix:", "local:", ""):
        if addr.startswith(prefix) and (prefix or addr.startswith("/")):
            path = addr[len(prefix) :]
            if not path.startswith("/"):
                raise AddressError(f"the socket path {path!r} is not absolute")
            if len(path.encode()) > UNIX_PATH_MAX:
                raise AddressError(f"the socket path is longer than {UNIX_PATH_MAX} bytes")
            return socket.AF_UNIX, path
    if addr.startswith(("inet:", "inet6:")):
        port_s, _, host = addr.split(":", 1)[1].partition("@")
        host = host or "127.0.0.1"  # inet:PORT, as a milter listening on every address
    elif addr.startswith("["):
        host, _, port_s = addr[1:].partition("]:")
    elif ":" in addr:
        host, _, port_s = addr.rpartition(":")
    else:
        raise AddressError("it has no port")
    port = port_of(port_s)
    check_host(host)
    return (socket.AF_INET6 if ":" in host else socket.AF_INET), (host, port)


def http_url(url: str) -> str:
    """An http:// or https:// URL with a host (and a valid port, if it gives one)."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # ValueError for a port out of range or not a number
    except ValueError as exc:
        raise AddressError(str(exc).lower()) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AddressError("it needs http:// or https:// and a host")
    if port == 0:
        raise AddressError("port 0 is no port to connect to")
    check_host(parts.hostname)
    return url


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: where it resolves to is not known here
        return False
