"""What every handler shares: the API's own App (its own database connection, its events
stamped with origin "api"), one lock around it, the idempotency table, and how to wake
the daemon for work that should not wait for the next tick."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes

from ..bootstrap import App, Token
from .models.base import Answer, dumped
from .problems import ApiProblem

IDEMPOTENCY_TTL_S = 24 * 3600.0
IDEMPOTENCY_MAX = 10_000  # remembered responses; the oldest go first


class ApiState:
    def __init__(self, app: App, wake: Callable[[bool], None] | None = None) -> None:
        self.app = app
        # One request at a time on the App: its connection and its use cases' caches are
        # not for concurrent threads. Writes are short (record, never the DNS work).
        self.lock = threading.Lock()
        # asks the daemon for a tick now (True: rewrite the signer from the log first)
        self.wake: Callable[[bool], None] = wake or (lambda resync: None)
        self.remembered: OrderedDict[tuple[str, str], tuple[float, str, int, dict[str, Any]]] = (
            OrderedDict()
        )

    @contextlib.contextmanager
    def use(self) -> Iterator[App]:
        with self.lock:
            yield self.app

    def once(
        self,
        token: Token,
        key: str | None,
        request: Any,
        run: Callable[[App], tuple[int, Answer]],
    ) -> tuple[int, dict[str, Any]]:
        """Run a write under the lock, unless the same token already ran it with this
        Idempotency-Key: then its first response again, and nothing recorded twice."""
        digest = hashlib.sha256(
            json.dumps(request, sort_keys=True, default=str).encode()
        ).hexdigest()
        with self.use() as app:
            now = time.monotonic()
            while self.remembered:
                first = next(iter(self.remembered.values()))
                if now - first[0] < IDEMPOTENCY_TTL_S and len(self.remembered) < IDEMPOTENCY_MAX:
                    break
                self.remembered.popitem(last=False)
            if key is not None:
                seen = self.remembered.get((token.name, key))
                if seen is not None:
                    if seen[1] != digest:
                        raise ApiProblem(
                            422,
                            f"Idempotency-Key {key!r} was used for a different request; "
                            "use a new key for a new request",
                        )
                    return seen[2], seen[3]
            status, answer = run(app)
            body = dumped(answer)
            if key is not None:  # errors are not remembered: a retry may succeed
                self.remembered[(token.name, key)] = (now, digest, status, body)
            return status, body


bearer = HTTPBearer(auto_error=False, description="a token from `rotator token create`")


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


def caller(
    scopes: SecurityScopes,
    state: Annotated[ApiState, Depends(api_state)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Token:
    """The token of the request, holding every scope the route needs (admin holds all)."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise ApiProblem(
            401, "no token: send Authorization: Bearer <token> (`rotator token create`)", challenge
        )
    with state.use() as app:
        token = app.tokens.verify(credentials.credentials)
    if token is None:
        raise ApiProblem(401, "the token is unknown or revoked; `rotator token list`", challenge)
    for scope in scopes.scopes:
        if not token.allows(scope):
            raise ApiProblem(
                403,
                f"token {token.name} lacks the {scope} scope "
                f"(it has {', '.join(token.scopes)}); create one with --scope {scope}",
            )
    return token


def scoped(scope: str) -> Any:
    """The route's dependency: a token with `scope`."""
    return Security(caller, scopes=[scope])
