"""What the routers share: a write's shape (token, Idempotency-Key, the use case, the
answer), the reason field, an identity by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Protocol, runtime_checkable

from fastapi import Depends, Security
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ...bootstrap import App, Token
from ...domain.errors import NotFound
from ...domain.model import IdentityState
from ...domain.names import printable
from ..idempotency import Attempt, IdempotencyKey
from ..models.base import Answer
from ..state import ApiState, api_state, caller


def reason_text(value: str) -> str:
    return printable("reason", value, 1000)


# every write's body carries the reason its events record; a protocol, not a base model,
# so that each body keeps its own field order and constraints in the document
@runtime_checkable
class Reasoned(Protocol):
    reason: str


@dataclass(frozen=True)
class Write:
    """A write route's request, but for its body: the API's state, the caller's token
    (holding the route's scope) and the Idempotency-Key it came with. Calling it runs the
    route's use case once per key and answers; errors become problem documents in
    problems.install's handlers, so a route only says what is its own."""

    state: ApiState
    token: Token
    attempt: Attempt

    @property
    def actor(self) -> str:
        return self.token.name

    def __call__(
        self,
        body: BaseModel,
        run: Callable[[App, str], tuple[int, Answer]],
        *,
        wake: bool = False,
        resync: bool = False,
    ) -> JSONResponse:
        """`run(app, reason)` under the App's lock (ApiState.once). wake: once it is
        recorded, ask the daemon for a tick now (resync: the signer rewritten first)."""
        reason = self._reason(body)  # checked before the key is claimed: nothing to release
        result = self.state.once(self.token, self.attempt, body, lambda app: run(app, reason))
        return self._answer(result, wake, resync)

    def taking_lock(
        self,
        body: BaseModel,
        perform: Callable[[str], tuple[int, Answer]],
        *,
        wake: bool = False,
    ) -> JSONResponse:
        """As calling it, for a write that takes the App's lock itself, for the part that
        needs it (ApiState.replay): `perform(reason)`."""
        reason = self._reason(body)
        result = self.state.replay(self.token, self.attempt, body, lambda: perform(reason))
        return self._answer(result, wake, False)

    @staticmethod
    def _reason(body: BaseModel) -> str:
        assert isinstance(body, Reasoned), f"{type(body).__name__} has no reason field"
        return reason_text(body.reason)

    def _answer(self, result: tuple[int, dict[str, Any]], wake: bool, resync: bool) -> JSONResponse:
        if wake:
            self.state.wake(resync)
        # already JSON (a replay is the kept reply), so sent as it is; the route's
        # response_model documents it
        status, body = result
        return JSONResponse(body, status_code=status)


# async: no I/O of its own, so no hop to the thread pool (see state.api_state)
async def write(
    state: Annotated[ApiState, Depends(api_state)],
    # the scopes are the route's, from writes(): FastAPI hands them down to caller
    token: Annotated[Token, Security(caller)],
    attempt: IdempotencyKey,
) -> Write:
    return Write(state, token, attempt)


def writes(scope: str) -> Any:
    """A write route's dependency: `write: Annotated[Write, writes("provision")]`."""
    return Security(write, scopes=[scope])


def identity_of(app: App, domain: str) -> IdentityState:
    """An identity by its name (a domain, or a companion's example.com~ed25519)."""
    name = domain.rstrip(".").lower()
    ident = app.store.identity(name)
    if ident is None:
        raise NotFound(f"domain {name} is not managed; see `rotator status`")
    return ident


def zone_warnings(app: App, ident: IdentityState) -> list[str]:
    """The zones a new identity's records go into whose backend could not be asked whether
    it serves them (a zone it said it does not serve refused the identity)."""
    return app.onboarding.zone_problems([ident])
