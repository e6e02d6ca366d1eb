"""Errors as RFC 9457 problem documents (application/problem+json): rotator's own errors
keep the one line the CLI prints, as the detail."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from ..bootstrap import DATABASE_ERRORS
from ..domain.errors import (
    AlreadyRunning,
    ConcurrencyError,
    ConfigError,
    ExternalError,
    IllegalTransition,
    InputError,
    NotFound,
    RotatorError,
    StoreError,
)

log = structlog.get_logger("rotator")
MEDIA_TYPE = "application/problem+json"

# the first class an error is an instance of gives its status
_STATUS: tuple[tuple[type[RotatorError], int], ...] = (
    (NotFound, 404),
    (ConcurrencyError, 409),
    (IllegalTransition, 409),
    (AlreadyRunning, 409),
    (InputError, 400),
    (ConfigError, 400),
    (ExternalError, 502),
    (StoreError, 503),
)


class Problem(BaseModel):
    """RFC 9457: what every error answers, as application/problem+json."""

    type: str = Field(description="urn:rotator:problem:<title in kebab case>")
    title: str
    status: int
    detail: str = Field(description="one line, as the CLI prints it")


def declared(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses: a problem document for each status."""
    content = {MEDIA_TYPE: {"schema": Problem.model_json_schema()}}
    return {s: {"description": HTTPStatus(s).phrase, "content": content} for s in statuses}


# What any route may answer besides its success: bad input, no or a weak token, not found,
# a conflict, an invalid request, and the daemon's own failures (database, DNS provider).
RESPONSES = declared(400, 401, 403, 404, 409, 422, 500, 502, 503)


class ApiProblem(Exception):
    """An error of the API itself (auth, idempotency): status and one line."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


def status_of(exc: RotatorError) -> int:
    return next((status for cls, status in _STATUS if isinstance(exc, cls)), 400)


def problem(status: int, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    title = HTTPStatus(status).phrase
    return JSONResponse(
        {
            "type": f"urn:rotator:problem:{title.lower().replace(' ', '-')}",
            "title": title,
            "status": status,
            "detail": detail,
        },
        status_code=status,
        media_type=MEDIA_TYPE,
        headers=headers,
    )


def validation_line(exc: RequestValidationError) -> str:
    """The first finding, as one line naming where: `body.domain: Field required`."""
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"{where}: {first.get('msg', 'invalid request')}"


def install(app: FastAPI) -> None:
    async def on_problem(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiProblem)
        return problem(exc.status, exc.detail, exc.headers)

    async def on_rotator(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RotatorError)
        return problem(status_of(exc), str(exc))

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem(422, validation_line(exc))

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return problem(exc.status_code, str(exc.detail), exc.headers)

    async def on_database(_: Request, exc: Exception) -> JSONResponse:
        log.error("api_database_error", error=str(exc))
        return problem(503, f"database: {exc}")

    async def on_crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("api_crashed", error=type(exc).__name__)
        return problem(500, "internal error; the daemon's log has the details")

    app.add_exception_handler(ApiProblem, on_problem)
    app.add_exception_handler(RotatorError, on_rotator)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    for error in DATABASE_ERRORS:
        app.add_exception_handler(error, on_database)
    app.add_exception_handler(Exception, on_crash)
