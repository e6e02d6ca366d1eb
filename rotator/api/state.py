"""What every handler shares: the API's own App (its own database connection, its events
stamped with origin "api"), one lock around it, the Idempotency-Key replies, and how to
wake the daemon for work that should not wait for the next tick."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes
from pydantic import BaseModel

from ..bootstrap import App, Token
from .group_commit import GroupCommit
from .idempotency import Attempt, once
from .models.base import Answer, dumped
from .problems import ApiProblem


class ApiState:
    def __init__(self, app: App, wake: Callable[[bool], None] | None = None) -> None:
        self.app = app
        # One request at a time on the App: its connection and its use cases' caches are
        # not for concurrent threads. Writes are short (record, never the DNS work).
        self.lock = threading.Lock()
        # asks the daemon for a tick now (True: rewrite the signer from the log first)
        self.wake: Callable[[bool], None] = wake or (lambda resync: None)
        self.keys = app.idempotency_keys()
        # a token check needs no lock: its own connection (a write's commit holds the lock
        # for an fsync or two, and every request checks a token)
        self.tokens = app.tokens_apart()
        self.onboarding = GroupCommit(app, self.lock)  # POST /v1/customers

    @contextlib.contextmanager
    def use(self) -> Iterator[App]:
        with self.lock:
            yield self.app

    def once(
        self,
        token: Token,
        write: Attempt,
        body: BaseModel | None,
        run: Callable[[App], tuple[int, Answer]],
    ) -> tuple[int, dict[str, Any]]:
        """Run a write under the lock, unless the same token already sent it with this
        Idempotency-Key: then its first response again, and nothing recorded twice."""

        def locked() -> tuple[int, Answer]:
            with self.use() as app:
                return run(app)

        return self.replay(token, write, body, locked)

    def replay(
        self,
        token: Token,
        write: Attempt,
        body: BaseModel | None,
        perform: Callable[[], tuple[int, Answer]],
    ) -> tuple[int, dict[str, Any]]:
        """As once(), for a write that takes the lock itself, for the part that needs it.
        The key is claimed outside the lock, so that a retry of a write still running is
        told so (409) rather than queued behind it."""

        def answered() -> tuple[int, dict[str, Any]]:
            status, answer = perform()
            return status, dumped(answer)

        now = self.app.ctx.clock.now()
        return once(self.keys, token.name, write, body, now, answered)


bearer = HTTPBearer(auto_error=False, description="a token from `rotator token create`")


# async, as it does no I/O: FastAPI runs a plain def dependency in its thread pool, a
# hop per request that costs more than the lookup
async def api_state(request: Request) -> ApiState:
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
    token = state.tokens.verify(credentials.credentials)
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
