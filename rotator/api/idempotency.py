"""Idempotency-Key on writes (RFC draft "The Idempotency-Key HTTP Header Field"): the same
token, key and request again within 24 hours get the first answer, and nothing is
recorded twice; the same key with another request is 422; while the first is still being
processed, 409. The replies survive a daemon restart (ports.IdempotencyKeys)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from pydantic import BaseModel

from ..ports import IdempotencyKeys, Reply
from .problems import ApiProblem


@dataclass(frozen=True)
class Attempt:
    """A write and the Idempotency-Key it came with, if any."""

    key: str | None
    method: str
    path: str

    def digest(self, body: BaseModel | None) -> str:
        """What makes two requests the same: method, path and body (as validated, so
        that key order and spacing do not matter). Only this digest is kept: a
        customer's key in a body never is."""
        fields = body.model_dump(mode="json") if body is not None else None
        text = json.dumps([self.method, self.path, fields], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


async def attempt(  # async: no I/O, so no hop to the thread pool (see state.api_state)
    request: Request,
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=200,
            description="The same key and request again: the first response, nothing "
            "recorded twice (kept 24 hours)",
        ),
    ] = None,
) -> Attempt:
    return Attempt(key, request.method, request.url.path)


# a write route's parameter: its Idempotency-Key header and what the request was
IdempotencyKey = Annotated[Attempt, Depends(attempt)]


def once(
    keys: IdempotencyKeys,
    owner: str,
    write: Attempt,
    body: BaseModel | None,
    now: datetime,
    run: Callable[[], tuple[int, dict[str, Any]]],
) -> tuple[int, dict[str, Any]]:
    """Run the write unless `owner` already sent it with this key: then its first reply."""
    if write.key is None:
        return run()
    digest = write.digest(body)
    seen = keys.claim(owner, write.key, digest, now)
    if seen is not None:
        if seen.digest != digest:
            raise ApiProblem(
                422,
                f"Idempotency-Key {write.key!r} was used for a different request; "
                "use a new key for a new request",
            )
        if seen.reply is None:
            raise ApiProblem(
                409,
                f"a request with Idempotency-Key {write.key!r} is still being processed; "
                "retry when it is done",
            )
        return seen.reply.status, seen.reply.body
    try:
        status, answer = run()
    except BaseException:
        keys.release(owner, write.key)  # errors are not kept: a retry may succeed
        raise
    keys.finish(owner, write.key, Reply(status, answer))
    return status, answer
