"""POSTs a webhook signed as Standard Webhooks says, over http.client with one deadline
for the whole request (connect, send, status, a capped read of the answer)."""

from __future__ import annotations

import http.client
import socket
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

from standardwebhooks.webhooks import Webhook

from ...ports import DeliveryError

MAX_ANSWER = 64 * 1024  # what is read of a receiver's answer: its status is what counts
USER_AGENT = "rotator-webhooks"


class HttpSender:
    def send(self, url: str, secret: str, msg_id: str, body: bytes, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        parts = urlsplit(url)
        host = parts.hostname or ""
        conn_cls = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        conn = conn_cls(host, parts.port, timeout=timeout)
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, now, body),
        }
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request("POST", path, body=body, headers=headers)
            _left(conn, deadline)
            answer = conn.getresponse()
            read = 0
            while read < MAX_ANSWER:  # drained within the deadline, never more than the cap
                _left(conn, deadline)
                chunk = answer.read1(MAX_ANSWER - read)
                if not chunk:
                    break
                read += len(chunk)
        except (OSError, http.client.HTTPException) as exc:
            what = (
                "timed out" if isinstance(exc, socket.timeout) else str(exc) or type(exc).__name__
            )
            raise DeliveryError(f"{host}: {what}") from None
        finally:
            conn.close()
        if not 200 <= answer.status < 300:
            raise DeliveryError(f"{host}: HTTP {answer.status} {answer.reason}"[:200])
        return answer.status


def _left(conn: http.client.HTTPConnection, deadline: float) -> None:
    """Each socket wait gets only what is left of the whole request's time."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    if conn.sock is not None:
        conn.sock.settimeout(left)
