"""Ask a running rspamd to sign a message: POST /checkv2 on its normal worker.

rspamd signs in its dkim_signing module and returns the header value in the JSON reply under
"dkim-signature": a string for one signature, a list when several selectors signed (3.4 does
both). A key it cannot read is only logged and the reply is 200 without the field, so callers
must treat "no signature" as the failure it is. Headers sent: `IP` (the client address, which
makes the message local), `User` (an authenticated user: signing is allowed) and `From` (the
envelope sender whose domain selects the key).
"""

from __future__ import annotations

import json

from ....domain.errors import SignerError
from .http_post import PostFailed, post

__all__ = ["rspamd_sign", "signatures_from_reply"]


def signatures_from_reply(reply: object) -> list[str]:
    """Every DKIM-Signature value in a decoded checkv2 reply, in the order rspamd gave them."""
    if not isinstance(reply, dict):
        raise SignerError("rspamd reply is not a JSON object")
    value = reply.get("dkim-signature")
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise SignerError(
        f"rspamd reply has an unexpected dkim-signature of type {type(value).__name__}"
    )


def rspamd_sign(
    url: str,
    message: bytes,
    *,
    sender: str,
    timeout: float = 10.0,
    user: str = "probe",
) -> list[str]:
    """POST the raw message to `url` (…/checkv2) and return its DKIM-Signature values.

    An empty list means rspamd answered but did not sign (no key for the domain, key
    unreadable, signing conditions not met); transport and HTTP errors, a reply slower than
    `timeout` in all or larger than http_post.MAX_REPLY raise SignerError.
    """
    headers = {
        "IP": "127.0.0.1",
        "User": user,
        "From": sender,
        "Content-Type": "application/octet-stream",
    }
    try:  # `timeout` bounds the whole exchange, the reply is capped (http_post)
        reply = post(url, message, headers, timeout=timeout)
    except PostFailed as exc:
        raise SignerError(f"rspamd {url}: {exc}") from None
    if not 200 <= reply.status < 300:
        raise SignerError(f"rspamd {url}: HTTP {reply.status} {reply.reason}")
    try:
        decoded = json.loads(reply.body)
    except ValueError:
        raise SignerError(f"rspamd {url}: reply is not JSON") from None
    return signatures_from_reply(decoded)
