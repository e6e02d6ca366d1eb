"""The milter protocol's wire: packets (4-byte big-endian length, a command byte, the
payload; NUL-terminated strings), addresses, the message split into headers and body, and
the result of one conversation. The conversation itself is in milter.py."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from ....config.addresses import MILTER_FORMS, AddressError, MilterTarget, milter_address
from ....domain.errors import SignerError

PROTOCOL_VERSION = 6
CHUNK = 65535  # libmilter's MILTER_CHUNK_SIZE: the largest body packet it accepts
# What one conversation may receive: a signing milter's replies are a few KiB, so a peer
# sending more is confused or hostile and is cut off before it is read.
MAX_PACKET = 1 << 16  # one packet, command byte included (a body replacement chunk fits)
MAX_RECEIVED = 1 << 20  # every packet together, counting their length prefixes
MAX_PACKETS = 10_000  # kept in raw_replies: a stream of tiny packets is bounded too

# MTA -> milter commands
C_ABORT, C_BODY, C_CONNECT, C_MACRO = b"A", b"B", b"C", b"D"
C_EOB, C_HELO, C_HEADER, C_MAIL, C_EOH = b"E", b"H", b"L", b"M", b"N"
C_OPTNEG, C_QUIT, C_RCPT, C_DATA = b"O", b"Q", b"R", b"T"

# Protocol flags (SMFIP_*): steps the milter may switch off or answer without a reply.
P_NOCONNECT, P_NOHELO, P_NOMAIL, P_NORCPT = 0x1, 0x2, 0x4, 0x8
P_NOBODY, P_NOHDRS, P_NOEOH, P_NR_HDR = 0x10, 0x20, 0x40, 0x80
P_NOUNKNOWN, P_NODATA, P_SKIP, P_RCPT_REJ = 0x100, 0x200, 0x400, 0x800
P_NR_CONN, P_NR_HELO, P_NR_MAIL, P_NR_RCPT = 0x1000, 0x2000, 0x4000, 0x8000
P_NR_DATA, P_NR_UNKN, P_NR_EOH, P_NR_BODY = 0x10000, 0x20000, 0x40000, 0x80000
P_HDR_LEADSPC = 0x100000
# We can honour every step flag above, so we offer them all (like sendmail's SMFI_CURR_PROT).
OFFERED_PROTOCOL = 0x1FFFFF
# Actions (SMFIF_*): offer all of them; we only record what the milter does.
OFFERED_ACTIONS = 0x1FF

# Replies that end a stage, and what we call them.
FINAL_REPLIES = {
    b"a": "accept",
    b"c": "continue",
    b"d": "discard",
    b"r": "reject",
    b"t": "tempfail",
    b"s": "skip",
    b"y": "replycode",
    b"f": "connfail",
    b"4": "shutdown",
}
R_PROGRESS, R_ADDHEADER, R_INSHEADER = b"p", b"h", b"i"


@dataclass(frozen=True)
class MilterResult:
    """What the milter did with the message.

    headers_added: add-header and insert-header actions (name, value) in the order received;
    values are as the milter sent them (folded, and with a leading space when the header
    leading-space option was negotiated).
    action: the final verdict (accept, continue, reject, discard, ...).
    raw_replies: every packet received, as (command character, payload).
    """

    headers_added: list[tuple[str, str]]
    action: str
    raw_replies: list[tuple[str, bytes]] = field(default_factory=list)
    smtp_reply: str | None = None
    protocol: int = 0


def parse_address(address: str) -> MilterTarget:
    """inet:PORT@HOST, inet6:PORT@HOST, HOST:PORT, [V6]:PORT, unix:/path, local:/path, /path
    (rotator.config.addresses, which the config checks every probe address with at load)."""
    try:
        return milter_address(address)
    except AddressError as exc:
        raise SignerError(f"milter address {address!r} is not {MILTER_FORMS}: {exc}") from None


def split_message(message: bytes) -> tuple[list[tuple[str, bytes]], bytes]:
    """Headers as (name, raw value after the colon, folding kept) and the raw body."""
    headers: list[tuple[str, bytes]] = []
    pos = 0
    n = len(message)
    current: list[bytes] = []

    def flush() -> None:
        if not current:
            return
        raw = b"".join(current)
        # Drop only the final line ending; inner CRLFs are folding and stay.
        raw = raw[:-2] if raw.endswith(b"\r\n") else raw.rstrip(b"\n")
        name, sep, value = raw.partition(b":")
        if not sep:
            raise SignerError(f"message header line without a colon: {raw[:60]!r}")
        headers.append((name.decode("ascii", "replace").strip(), value))
        current.clear()

    while pos < n:
        end = message.find(b"\n", pos)
        line = message[pos:] if end < 0 else message[pos : end + 1]
        if line in (b"\r\n", b"\n"):
            flush()
            return headers, message[pos + len(line) :]
        if line[:1] in (b" ", b"\t") and current:
            current.append(line)
        else:
            flush()
            current.append(line)
        pos += len(line)
    flush()
    return headers, b""


def _cstr(text: str | bytes) -> bytes:
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    if b"\0" in data:
        raise SignerError("milter strings cannot contain NUL bytes")
    return data + b"\0"


def _macro_packet(stage: bytes, macros: Mapping[str, str]) -> bytes:
    return stage + b"".join(_cstr(k) + _cstr(v) for k, v in macros.items())


class _Conn:
    def __init__(self, sock: socket.socket, deadline: float, address: str) -> None:
        self.sock = sock
        self.deadline = deadline
        self.address = address
        self.replies: list[tuple[str, bytes]] = []
        self.received = 0

    def _arm(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise SignerError(f"milter {self.address}: timed out")
        self.sock.settimeout(left)

    def send(self, cmd: bytes, payload: bytes = b"") -> None:
        self._arm()
        try:
            self.sock.sendall(struct.pack("!I", len(payload) + 1) + cmd + payload)
        except TimeoutError:
            raise SignerError(f"milter {self.address}: timed out sending") from None
        except OSError as exc:
            raise SignerError(
                f"milter {self.address}: send failed: {exc.strerror or exc}"
            ) from None

    def _read_exact(self, size: int) -> bytes:
        buf = bytearray()
        while len(buf) < size:
            self._arm()
            try:
                chunk = self.sock.recv(size - len(buf))
            except TimeoutError:
                raise SignerError(f"milter {self.address}: timed out waiting for a reply") from None
            except OSError as exc:
                reason = exc.strerror or exc
                raise SignerError(f"milter {self.address}: read failed: {reason}") from None
            if not chunk:
                raise SignerError(f"milter {self.address}: connection closed mid-conversation")
            buf += chunk
        return bytes(buf)

    def recv(self) -> tuple[bytes, bytes]:
        (length,) = struct.unpack("!I", self._read_exact(4))
        if not 1 <= length <= MAX_PACKET:
            raise SignerError(
                f"milter {self.address}: protocol error: packet length {length} "
                f"(at most {MAX_PACKET})"
            )
        self.received += 4 + length
        if self.received > MAX_RECEIVED or len(self.replies) >= MAX_PACKETS:
            raise SignerError(
                f"milter {self.address}: protocol error: more than {MAX_RECEIVED} bytes or "
                f"{MAX_PACKETS} packets of replies to one message"
            )
        data = self._read_exact(length)
        cmd, payload = data[:1], data[1:]
        self.replies.append((cmd.decode("latin-1"), payload))
        return cmd, payload


def _nul_fields(payload: bytes, count: int, what: str) -> list[str]:
    parts = payload.split(b"\0")
    if len(parts) < count + 1:
        raise SignerError(f"milter protocol error: malformed {what} reply")
    return [p.decode("utf-8", "replace") for p in parts[:count]]


def _connect(address: str, deadline: float) -> socket.socket:
    family, target = parse_address(address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        sock.connect(target)
    except TimeoutError:
        sock.close()
        raise SignerError(f"milter {address}: timed out connecting") from None
    except OSError as exc:
        sock.close()
        raise SignerError(f"milter {address}: cannot connect: {exc.strerror or exc}") from None
    return sock


def signed_message(message: bytes, result: MilterResult) -> bytes:
    """The message with the milter's added headers on top, CRLF line endings, as sent on.

    Inserted headers are prepended in the order received; for DKIM-Signature fields the
    position among themselves does not affect verification.
    """
    lines = []
    for name, value in result.headers_added:
        # A value negotiated with leading spaces carries its own blank after the colon.
        sep = ":" if value[:1] in (" ", "\t") else ": "
        text = (name + sep + value).replace("\r\n", "\n").replace("\n", "\r\n")
        lines.append(text.encode("utf-8") + b"\r\n")
    return b"".join(lines) + message
