"""Where the API keeps the answers of writes sent with an Idempotency-Key (RFC draft "The
Idempotency-Key HTTP Header Field"), so that a retry after a lost answer, or after a
daemon restart, gets the first answer instead of a second write."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]  # the JSON answer


@dataclass(frozen=True)
class Seen:
    """A key already taken: by which request (a digest of it), and its reply once done."""

    digest: str
    reply: Reply | None  # None: the first request is still being processed


class IdempotencyKeys(Protocol):
    """Keys are per caller (`owner`: a token's name) and expire a fixed time after the
    first request; an expired key is free again. Replies outlive the process; a claim
    never finished (its process stopped mid-request) is free again once reopened."""

    def claim(self, owner: str, key: str, digest: str, now: datetime) -> Seen | None:
        """Take `key` for the request `digest` names, atomically: None when it was free
        (the caller now runs the request, then finish() or release()), else what holds
        it."""
        ...

    def finish(self, owner: str, key: str, reply: Reply) -> None:
        """Keep the reply of a claimed key, for its retries."""
        ...

    def release(self, owner: str, key: str) -> None:
        """Free a claimed key whose request failed: a retry may succeed, and runs again."""
        ...

    def close(self) -> None: ...
