"""The operator status page at `/`: the overview (with search), one page per identity, and a
login form that keeps a read-scope token in an HttpOnly cookie. Server-rendered HTML
(rotator.statuspage), no JavaScript."""

from __future__ import annotations

import urllib.parse
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ...statuspage.identity import render_identity
from ...statuspage.layout import page, render_login
from ...statuspage.overview import render_overview
from ...statuspage.reading import build_identity, build_overview
from ...timeutil import utcnow
from ..state import ApiState, api_state

router = APIRouter(include_in_schema=False)
COOKIE = "rotator_token"
MAX_FORM = 4096  # a token and nothing else


def _token_ok(state: ApiState, secret: str | None) -> bool:
    if not secret:
        return False
    token = state.tokens.verify(secret)
    return token is not None and token.allows("read")


def _secret(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(COOKIE)


State = Annotated[ApiState, Depends(api_state)]


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, state: State, q: str = "") -> Response:
    if not _token_ok(state, _secret(request)):
        return RedirectResponse("/login", status_code=303)
    with state.use() as app:
        html = render_overview(build_overview(app, utcnow(), q[:200]))
    return HTMLResponse(html)


@router.get("/identity", response_class=HTMLResponse)
def identity(request: Request, state: State, name: str = "") -> Response:
    if not _token_ok(state, _secret(request)):
        return RedirectResponse("/login", status_code=303)
    with state.use() as app:
        view = build_identity(app, name.rstrip(".").lower(), utcnow())
    if view is None:
        body = page("not found", "<p>No such identity; search on the overview.</p>")
        return HTMLResponse(body, status_code=404)
    return HTMLResponse(render_identity(view))


@router.get("/login", response_class=HTMLResponse)
def login_form() -> HTMLResponse:
    return HTMLResponse(render_login(None))


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, state: State) -> Response:
    body = await request.body()
    fields = urllib.parse.parse_qs(body[:MAX_FORM].decode(errors="replace"))
    secret = (fields.get("token") or [""])[0].strip()
    if not _token_ok(state, secret):
        error = "that token is unknown, revoked, or lacks the read scope"
        return HTMLResponse(render_login(error), status_code=401)
    done = RedirectResponse("/", status_code=303)
    secure = request.url.scheme == "https"
    done.set_cookie(COOKIE, secret, httponly=True, samesite="strict", secure=secure)
    return done
