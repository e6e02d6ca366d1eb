"""A small MTA-side client of the milter protocol (version 6, as libmilter speaks it).

It plays the MTA for one message so a probe can ask a running milter (OpenDKIM) to sign: option
negotiation, connect, helo, mail, rcpt, headers, end of headers, body, end of message, quit. The
body goes over the wire byte for byte; header values keep their folding. Only the header
additions are interpreted; every reply is kept in `raw_replies` for diagnosis.

Wire format: every packet is a 4-byte big-endian length (command byte included), one command
byte, then the payload. Strings are NUL-terminated.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import struct
import time
from collections.abc import Mapping, Sequence

from ....domain.errors import SignerError
from .milter_wire import (
    C_BODY,
    C_CONNECT,
    C_DATA,
    C_EOB,
    C_EOH,
    C_HEADER,
    C_HELO,
    C_MACRO,
    C_MAIL,
    C_OPTNEG,
    C_QUIT,
    C_RCPT,
    CHUNK,
    FINAL_REPLIES,
    OFFERED_ACTIONS,
    OFFERED_PROTOCOL,
    P_HDR_LEADSPC,
    P_NOBODY,
    P_NOCONNECT,
    P_NODATA,
    P_NOEOH,
    P_NOHDRS,
    P_NOHELO,
    P_NOMAIL,
    P_NORCPT,
    P_NR_BODY,
    P_NR_CONN,
    P_NR_DATA,
    P_NR_EOH,
    P_NR_HDR,
    P_NR_HELO,
    P_NR_MAIL,
    P_NR_RCPT,
    PROTOCOL_VERSION,
    R_ADDHEADER,
    R_INSHEADER,
    R_PROGRESS,
    MilterResult,
    _Conn,
    _connect,
    _cstr,
    _macro_packet,
    _nul_fields,
    parse_address,
    signed_message,
    split_message,
)

__all__ = [
    "MilterResult",
    "milter_ping",
    "milter_sign",
    "parse_address",
    "signed_message",
    "split_message",
]


def milter_ping(address: str, *, timeout: float = 5.0) -> int:
    """Negotiate options and quit; returns the milter's protocol flags.

    A health check that signs nothing. OpenDKIM applies a pending reload (SIGUSR1) at this
    point, so a ping right after the signal makes the reload happen now.
    """
    deadline = time.monotonic() + timeout
    sock = _connect(address, deadline)
    conn = _Conn(sock, deadline, address)
    try:
        return _negotiate(conn)
    finally:
        _quit(conn)
        sock.close()


def _negotiate(conn: _Conn) -> int:
    conn.send(C_OPTNEG, struct.pack("!III", PROTOCOL_VERSION, OFFERED_ACTIONS, OFFERED_PROTOCOL))
    cmd, payload = conn.recv()
    if cmd != C_OPTNEG or len(payload) < 12:
        raise SignerError(f"milter {conn.address}: protocol error: bad option negotiation reply")
    version, _actions, proto = struct.unpack("!III", payload[:12])
    if version < 2:
        raise SignerError(f"milter {conn.address}: protocol error: milter speaks version {version}")
    return int(proto)


def milter_sign(
    address: str,
    message: bytes,
    *,
    sender: str,
    recipients: Sequence[str],
    client_ip: str = "127.0.0.1",
    helo: str = "probe.local",
    timeout: float = 10.0,
    macros: Mapping[str, str] | None = None,
) -> MilterResult:
    """Pass one message through the milter at `address` and return its verdict and additions.

    `macros` are sent at every stage on top of the defaults (j, {daemon_name}, i, ...), so a
    caller can add e.g. {auth_type}/{auth_authen} to look like an authenticated submission.
    A tempfail (or a 4xx reply code) raises SignerError: the MTA would hold the message.
    """
    if not recipients:
        raise SignerError("milter probe needs at least one recipient")
    try:
        ip = ipaddress.ip_address(client_ip)
    except ValueError:
        raise SignerError(f"milter probe client address {client_ip!r} is not an IP") from None
    deadline = time.monotonic() + timeout
    headers, body = split_message(message)
    queue_id = "P" + os.urandom(5).hex().upper()
    extra = dict(macros or {})
    # OpenDKIM reads `i` (queue id, for logs), `j` (authserv-id fallback), {daemon_name} (only
    # with its MTA option) and {auth_type} (authenticated senders are signed like internal ones).
    stage_macros: dict[bytes, dict[str, str]] = {
        C_CONNECT: {"j": helo, "{daemon_name}": "rotator-probe", "_": f"{helo} [{ip}]"},
        C_HELO: {},
        C_MAIL: {"i": queue_id, "{mail_addr}": sender},
        C_RCPT: {},
        C_DATA: {"i": queue_id},
        C_EOH: {"i": queue_id},
        C_EOB: {"i": queue_id},
    }

    sock = _connect(address, deadline)
    conn = _Conn(sock, deadline, address)
    try:
        return _converse(conn, headers, body, sender, recipients, ip, helo, stage_macros, extra)
    finally:
        with contextlib.suppress(OSError):
            sock.close()


def _converse(
    conn: _Conn,
    headers: list[tuple[str, bytes]],
    body: bytes,
    sender: str,
    recipients: Sequence[str],
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
    helo: str,
    stage_macros: dict[bytes, dict[str, str]],
    extra: Mapping[str, str],
) -> MilterResult:
    proto = _negotiate(conn)
    leadspc = bool(proto & P_HDR_LEADSPC)

    def result(action: str, added: list[tuple[str, str]], reply: str | None = None) -> MilterResult:
        return MilterResult(added, action, list(conn.replies), reply, proto)

    def stage(cmd: bytes, payload: bytes, skip_flag: int, noreply_flag: int) -> str:
        """Send macros and one command; return the verdict ("continue" if none expected)."""
        if proto & skip_flag:
            return "continue"
        conn.send(C_MACRO, _macro_packet(cmd, {**stage_macros.get(cmd, {}), **extra}))
        conn.send(cmd, payload)
        if proto & noreply_flag:
            return "continue"
        return _verdict(conn)

    def early(verdict: str) -> MilterResult | None:
        # Anything but continue before end-of-message ends the message: no additions.
        if verdict == "continue":
            return None
        if verdict == "skip":
            raise SignerError(f"milter {conn.address}: protocol error: skip outside the body")
        _quit(conn)
        return result(verdict, [], _last_reply(conn))

    family = b"6" if ip.version == 6 else b"4"
    connect = _cstr(helo) + family + struct.pack("!H", 25) + _cstr(str(ip))
    if r := early(stage(C_CONNECT, connect, P_NOCONNECT, P_NR_CONN)):
        return r
    if r := early(stage(C_HELO, _cstr(helo), P_NOHELO, P_NR_HELO)):
        return r
    if r := early(stage(C_MAIL, _cstr(f"<{sender}>"), P_NOMAIL, P_NR_MAIL)):
        return r
    for rcpt in recipients:
        if r := early(stage(C_RCPT, _cstr(f"<{rcpt}>"), P_NORCPT, P_NR_RCPT)):
            return r
    if r := early(stage(C_DATA, b"", P_NODATA, P_NR_DATA)):
        return r
    if not proto & P_NOHDRS:
        for name, value in headers:
            # Without the leading-space option the MTA strips the blanks after the colon.
            raw = value if leadspc else value.lstrip(b" \t")
            conn.send(C_HEADER, _cstr(name) + _cstr(raw))
            if not proto & P_NR_HDR and (r := early(_verdict(conn))):
                return r
    if r := early(stage(C_EOH, b"", P_NOEOH, P_NR_EOH)):
        return r
    if not proto & P_NOBODY:
        for start in range(0, len(body), CHUNK):
            conn.send(C_BODY, body[start : start + CHUNK])
            if proto & P_NR_BODY:
                continue
            verdict = _verdict(conn)
            if verdict == "skip":
                break
            if r := early(verdict):
                return r
    conn.send(C_MACRO, _macro_packet(C_EOB, {**stage_macros[C_EOB], **extra}))
    conn.send(C_EOB)
    added: list[tuple[str, str]] = []
    while True:
        cmd, payload = conn.recv()
        if cmd == R_ADDHEADER:
            hname, hvalue = _nul_fields(payload, 2, "add-header")
            added.append((hname, hvalue))
        elif cmd == R_INSHEADER:
            if len(payload) < 4:
                raise SignerError(f"milter {conn.address}: protocol error: short insert-header")
            hname, hvalue = _nul_fields(payload[4:], 2, "insert-header")
            added.append((hname, hvalue))
        elif cmd == R_PROGRESS:
            continue
        elif cmd in FINAL_REPLIES:
            verdict = _classify(cmd, payload, conn.address)
            _quit(conn)
            return result(verdict, added, _last_reply(conn))
        # Other modifications (change header, recipients, body, quarantine) are recorded only.


def _classify(cmd: bytes, payload: bytes, address: str) -> str:
    verdict = FINAL_REPLIES[cmd]
    if verdict == "replycode":
        text = payload.rstrip(b"\0").decode("utf-8", "replace")
        if text.startswith("4"):
            raise SignerError(f"milter {address}: temporary failure: {text.splitlines()[0]}")
        return "reject" if text.startswith("5") else "replycode"
    if verdict == "tempfail":
        raise SignerError(f"milter {address}: tempfail (the MTA would hold the message)")
    if verdict in ("connfail", "shutdown"):
        raise SignerError(f"milter {address}: milter gave up the connection ({verdict})")
    return verdict


def _verdict(conn: _Conn) -> str:
    while True:
        cmd, payload = conn.recv()
        if cmd == R_PROGRESS:
            continue
        if cmd in FINAL_REPLIES:
            return _classify(cmd, payload, conn.address)
        raise SignerError(
            f"milter {conn.address}: protocol error: unexpected reply {cmd!r} before end of message"
        )


def _last_reply(conn: _Conn) -> str | None:
    if conn.replies and conn.replies[-1][0] == "y":
        return conn.replies[-1][1].rstrip(b"\0").decode("utf-8", "replace")
    return None


def _quit(conn: _Conn) -> None:
    # Best effort: the verdict is already in hand, a peer that hung up changes nothing.
    with contextlib.suppress(SignerError):
        conn.send(C_QUIT)
