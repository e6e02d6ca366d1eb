"""One HTTP/1.1 POST with a total deadline and a capped reply.

A signer asked to sign a probe runs inside the signer lock, so its answer must not be
able to take longer or grow larger than allowed: every socket operation (name lookup
aside, which the system resolver bounds) gets the time left until one deadline, not a
fresh timeout of its own, and the reply is refused once it passes `limit` bytes.
"""

from __future__ import annotations

import socket
import ssl
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["MAX_REPLY", "PostFailed", "Reply", "post"]

MAX_REPLY = 1 << 20  # a checkv2 reply to one probe message is a few KiB
RECV = 1 << 16
MAX_HEAD = 1 << 16  # status line and headers


class PostFailed(Exception):
    """The exchange did not complete; str() is a one-line reason."""


@dataclass(frozen=True)
class Reply:
    status: int
    reason: str
    body: bytes


class _Clock:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout

    def arm(self, sock: socket.socket) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise PostFailed(f"timed out after {self.timeout:g}s")
        sock.settimeout(left)


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float,
    limit: int = MAX_REPLY,
) -> Reply:
    """POST `body` to `url`; the reply once complete. PostFailed for a transport error, the
    deadline passing, a reply over `limit` bytes or one that is not HTTP."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    clock = _Clock(timeout)
    sock = _connect(host, port, clock)
    try:
        if tls:
            clock.arm(sock)  # the handshake as a whole gets the time left
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc.rpartition('@')[2]}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
        clock.arm(sock)  # sendall's timeout covers all of the data
        sock.sendall("\r\n".join(head).encode("latin-1") + body)
        return _parse(_read(sock, clock, limit))
    except TimeoutError:
        raise PostFailed(f"timed out after {timeout:g}s") from None
    except ssl.SSLError as exc:
        raise PostFailed(f"TLS: {exc.reason or exc}") from None
    except OSError as exc:
        raise PostFailed(exc.strerror or str(exc)) from None
    finally:
        sock.close()


def _connect(host: str, port: int, clock: _Clock) -> socket.socket:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise PostFailed(f"cannot resolve {host}: {exc.strerror or exc}") from None
    problem = "no address"
    for family, kind, proto, _, address in found:
        sock = socket.socket(family, kind, proto)
        try:
            clock.arm(sock)
            sock.connect(address)
            return sock
        except TimeoutError:
            sock.close()
            raise PostFailed(f"timed out after {clock.timeout:g}s connecting") from None
        except PostFailed:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            problem = exc.strerror or str(exc)
    raise PostFailed(problem)


def _read(sock: socket.socket, clock: _Clock, limit: int) -> bytes:
    """Until the reply is complete or the peer closes, never more than `limit` bytes."""
    buf = bytearray()
    head: tuple[int, dict[str, str]] | None = None
    while head is None or not _complete(buf, *head):
        clock.arm(sock)
        chunk = sock.recv(min(RECV, limit + 1 - len(buf)))
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > limit:
            raise PostFailed(f"reply larger than {limit} bytes")
        if head is None:
            head = _head(buf)
    return bytes(buf)


def _head(buf: bytes | bytearray) -> tuple[int, dict[str, str]] | None:
    """(where the body starts, headers with lower-case names) once the head is in."""
    end = buf.find(b"\r\n\r\n", 0, MAX_HEAD)
    if end < 0:
        if len(buf) >= MAX_HEAD:
            raise PostFailed(f"reply headers longer than {MAX_HEAD} bytes")
        return None
    fields = {}
    for line in bytes(buf[:end]).decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return end + 4, fields


def _complete(buf: bytearray, start: int, fields: dict[str, str]) -> bool:
    if "chunked" in fields.get("transfer-encoding", "").lower():
        return buf.endswith(b"0\r\n\r\n")
    length = fields.get("content-length", "")
    return length.isdigit() and len(buf) - start >= int(length)  # without one: until closed


def _parse(data: bytes) -> Reply:
    head = _head(data)
    if head is None:
        raise PostFailed("the reply ended before its headers did")
    start, fields = head
    status = data[: data.find(b"\r\n")].decode("latin-1")
    version, _, rest = status.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or not code.isdigit():
        raise PostFailed(f"not an HTTP reply: {status[:60]!r}")
    body = data[start:]
    if "chunked" in fields.get("transfer-encoding", "").lower():
        body = _unchunk(body)
    elif fields.get("content-length", "").isdigit():
        length = int(fields["content-length"])
        if len(body) < length:
            raise PostFailed(f"the reply ended after {len(body)} of {length} body bytes")
        body = body[:length]
    return Reply(int(code), reason.strip(), body)


def _unchunk(data: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while True:
        end = data.find(b"\r\n", pos)
        size_text = data[pos:end].split(b";")[0].strip() if end >= 0 else b""
        try:
            size = int(size_text, 16)
        except ValueError:
            raise PostFailed("malformed chunked reply") from None
        if size == 0:
            return bytes(out)
        start = end + 2
        if len(data) < start + size + 2:
            raise PostFailed("the reply ended inside a chunk")
        out += data[start : start + size]
        pos = start + size + 2
