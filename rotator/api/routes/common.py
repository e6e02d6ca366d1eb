"""What the routers share: the reason field, the JSON answer, an identity by name."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.responses import JSONResponse

from ...bootstrap import App
from ...domain.errors import NotFound
from ...domain.model import IdentityState
from ...domain.names import printable


def reason_text(value: str) -> str:
    return printable("reason", value, 1000)


def answer(status: int, body: dict[str, Any]) -> JSONResponse:
    """A write's answer, as run (or replayed) by ApiState.once: already JSON, so sent as
    it is; the route's response_model documents it."""
    return JSONResponse(body, status_code=status)


def identity_of(app: App, domain: str) -> IdentityState:
    """An identity by its name (a domain, or a companion's example.com~ed25519)."""
    name = domain.rstrip(".").lower()
    ident = app.store.identity(name)
    if ident is None:
        raise NotFound(f"domain {name} is not managed; see `rotator status`")
    return ident


# how old the primary's answer about a zone may be in a warning: the API onboards many
# customers into the same few zones
ZONE_CHECK_AGE = timedelta(minutes=1)


def zone_warnings(app: App, ident: IdentityState) -> list[str]:
    """The zones a new identity's records go into that the primary does not serve yet.
    Needs no lock: it asks the primary, not the App's database."""
    return [
        f"{p}: add the zone to the primary before its first key is published"
        for p in app.onboarding.zone_problems([ident], max_age=ZONE_CHECK_AGE)
    ]
