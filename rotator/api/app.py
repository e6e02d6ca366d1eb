"""The FastAPI application: the routers, the problem documents, /openapi.json."""

from __future__ import annotations

from fastapi import FastAPI

from .. import __version__
from . import problems
from .routes import changes, customers, identities, operations, page, status, webhooks
from .state import ApiState


def create_app(state: ApiState) -> FastAPI:
    api = FastAPI(
        title="rotator provisioning API",
        version=__version__,
        summary="DKIM keys of an ESP's customers: onboarding, state, rotations, emergencies",
        openapi_url="/openapi.json",
        docs_url=None,  # no third-party assets served from the daemon
        redoc_url=None,
    )
    api.state.api = state
    problems.install(api)
    for module in (customers, identities, changes, operations, status, webhooks, page):
        api.include_router(module.router, responses=problems.RESPONSES)
    return api
