"""/v1/identities: read an identity's state, list them by cursor, check the customer's
DNS now, request a rotation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ...bootstrap import App, Requested, Token
from ..models.identities import (
    DnsCheck,
    IdentityPage,
    IdentityView,
    NotRotated,
    RotationRequested,
    Rotations,
)
from ..state import ApiState, api_state, scoped
from ..views import customer_dns, identity_brief, identity_view, when
from .common import Write, identity_of, writes

router = APIRouter(prefix="/v1/identities", tags=["identities"])
State = Annotated[ApiState, Depends(api_state)]


@router.get("", summary="Identities, in name order, a page at a time")
def list_identities(
    state: State,
    _: Annotated[Token, scoped("read")],
    after: Annotated[str, Query(description="the `next` of the previous page")] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> IdentityPage:
    with state.use() as app:
        found = app.store.identity_page(after, limit + 1)  # one more: is there a next page
        page = found[:limit]
        items = [identity_brief(app, ident) for ident in page]
    return IdentityPage(items=items, next=page[-1].identity if len(found) > limit else None)


@router.get("/{domain}", summary="An identity: keys, what is awaited and why, problems")
def get_identity(domain: str, state: State, _: Annotated[Token, scoped("read")]) -> IdentityView:
    with state.use() as app:
        return identity_view(app, identity_of(app, domain))


@router.post("/{domain}/check", summary="Check the customer's DNS records now")
def check_identity(domain: str, state: State, _: Annotated[Token, scoped("read")]) -> DnsCheck:
    with state.use() as app:
        ident = identity_of(app, domain)
        dns = customer_dns(app, ident)
        problem = app.customer_dns.check(ident) if dns.records else None
    return DnsCheck(identity=ident.identity, ok=problem is None, problem=problem,
                    instructions=dns.instructions, records=dns.records)  # fmt: skip


class RotationRequest(BaseModel):
    reason: str = Field("", max_length=1000)


def requested_view(done: Requested) -> RotationRequested:
    return RotationRequested(identity=done.identity.identity, recorded=done.recorded,
                             switch=done.switch, waiting_since=when(done.since))  # fmt: skip


@router.post(
    "/{domain}/rotations",
    status_code=202,
    response_model=Rotations,
    summary="Rotate now (the daemon does it)",
)
def request_rotation(
    domain: str, body: RotationRequest, write: Annotated[Write, writes("rotate")]
) -> JSONResponse:
    def run(app: App, reason: str) -> tuple[int, Rotations]:
        done = app.rotation.request(domain, write.actor, reason)  # its errors are the CLI's
        name = done.identity.identity
        out: list[RotationRequested | NotRotated] = [requested_view(done)]
        for companion, more in app.rotation.request_companions(name, write.actor, reason):
            if isinstance(more, str):
                skipped = NotRotated(identity=companion.identity, recorded=False, not_rotated=more)
                out.append(skipped)
            else:
                out.append(requested_view(more))
        return 202, Rotations(requested=out)

    return write(body, run, wake=True)
