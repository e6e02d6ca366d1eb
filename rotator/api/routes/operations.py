"""Emergencies (by scope, with dry-run), the safety valve and the audit log, as
`rotator rotate --emergency`, `rotator safety release` and `rotator log` do them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ...bootstrap import App, Scope, Token
from ...domain.errors import InputError
from ...domain.events import EVENT_TYPES
from ...ports import LogFilter
from ..models.operations import (
    Compromised,
    EmergencyDeclared,
    EmergencyPlan,
    LogPage,
    PoolFill,
    PoolKind,
    Promoted,
    Released,
    SafetyState,
)
from ..state import ApiState, api_state, scoped
from ..views import event_view, signer_results
from .common import Write, reason_text, writes

router = APIRouter(prefix="/v1", tags=["operations"])
State = Annotated[ApiState, Depends(api_state)]


class EmergencyRequest(BaseModel):
    domain: str = ""
    selector: str = Field("", description="with domain: only this selector")
    customer: str = ""
    policy: str = ""
    all: bool = Field(False, description="every key (needs confirm)")
    keystore_intact: bool = False
    reason: str = Field(min_length=1, max_length=1000, description="goes into every event")
    dry_run: bool = False
    confirm: bool = Field(False, description="--yes: all keys, or a scope above the safety limit")


def scope_of(body: EmergencyRequest) -> Scope:
    """The CLI's checks of an emergency's options, worded for the request's fields."""
    reason_text(body.reason)  # a bad reason is refused first, as in every write
    scoped_by = [bool(body.domain), bool(body.customer), bool(body.policy), body.all]
    if sum(scoped_by) != 1:
        raise InputError(
            "an emergency needs exactly one scope: domain [selector], customer, policy or all"
        )
    if body.selector and not body.domain:
        raise InputError("selector needs the domain it belongs to")
    if not body.reason.strip():
        raise InputError("an emergency needs a reason: it goes into every event")
    if body.keystore_intact and not body.all:
        raise InputError("keystore_intact only changes all (narrower scopes keep standby keys)")
    if body.all and not body.confirm and not body.dry_run:
        raise InputError("all revokes every key the ESP has; add confirm: true")
    return Scope(
        domain=body.domain, selector=body.selector.lower(), customer=body.customer,
        policy=body.policy, everything=body.all, keystore_intact=body.keystore_intact,
    )  # fmt: skip


@router.post(
    "/emergencies",
    status_code=202,
    response_model=EmergencyDeclared,
    summary="Take compromised keys out of service",
    responses={200: {"model": EmergencyPlan, "description": "dry_run: the plan; nothing was done"}},
)
def declare_emergency(
    body: EmergencyRequest, write: Annotated[Write, writes("emergency")]
) -> JSONResponse:
    scope = scope_of(body)

    def run(app: App, reason: str) -> tuple[int, EmergencyPlan | EmergencyDeclared]:
        plan = app.emergency.plan(scope)
        out = EmergencyPlan(
            scope=scope.describe(),
            dry_run=body.dry_run,
            compromise=[Compromised(domain=k.domain, selector=k.selector, state=k.state,
                                    customer_managed=k.customer_managed) for k in plan.compromise],
            promote=[Promoted(domain=k.domain, selector=k.selector) for k in plan.promote],
        )  # fmt: skip
        if body.dry_run:
            return 200, out
        if not scope.everything:
            what = f"the emergency over {scope.describe()}"
            app.safety.check_command(len(plan.compromise), what, body.confirm)
        declared = app.emergency.declare(plan, write.actor, reason)
        return 202, EmergencyDeclared(**dict(out), signers=signer_results(declared.targets),
                                      signer_error=declared.signer_error)  # fmt: skip

    # revoke and replace now, signer rewritten from the log first
    return write(body, run, wake=not body.dry_run, resync=True)


class Release(BaseModel):
    reason: str = Field("", max_length=1000)


@router.get("/safety", summary="What the safety valve holds or paces")
def safety_state(state: State, _: Annotated[Token, scoped("read")]) -> SafetyState:
    with state.use() as app:
        held = app.safety.held()
    return SafetyState(held=held)


@router.post(
    "/safety/release",
    response_model=Released,
    summary="Let held work go ahead (`rotator safety release`)",
)
def release_safety(body: Release, write: Annotated[Write, writes("admin")]) -> JSONResponse:
    def run(app: App, reason: str) -> tuple[int, Released]:
        app.safety.release(write.actor, reason)
        return 200, Released(released=True)

    return write(body, run, wake=True)


@router.post("/pool/fill", summary="Top up the key pool now (the daemon generates)")
def fill_pool(state: State, _: Annotated[Token, scoped("admin")]) -> PoolFill:
    with state.use() as app:
        sizes = app.ctx.pool_sizes
    state.wake(False)  # an idle tick refills the pool
    return PoolFill(kinds=[PoolKind(algorithm=a, bits=b, keep=n) for (a, b), n in sizes.items()])


@router.get("/log", summary="The audit log, oldest first, a page at a time by log position")
def audit_log(
    state: State,
    _: Annotated[Token, scoped("read")],
    # a log position is a SQLite INTEGER: larger is no position, and no crash
    after: Annotated[
        int, Query(ge=0, le=2**63 - 1, description="the `next` of the previous page")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    domain: str | None = None,
    selector: str | None = None,
    key_id: Annotated[str | None, Query(alias="key")] = None,
    customer: str | None = None,
    types: Annotated[list[str] | None, Query(alias="type")] = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> LogPage:
    for t in types or ():
        if t not in EVENT_TYPES:
            raise InputError(
                f"--type: unknown event type {t!r}; use one of {', '.join(sorted(EVENT_TYPES))}"
            )
    for name, at in (("since", since), ("until", until)):
        if at is not None and at.tzinfo is None:
            raise InputError(f"{name}: give a time zone, e.g. 2026-01-01T00:00:00Z")
    with state.use() as app:
        flt = app.queries.log_filter(
            LogFilter(domain=domain, selector=selector, key_id=key_id, types=tuple(types or ()),
                      actor=actor, since=since, until=until, after_position=after,
                      limit=limit + 1),
            customer=customer,
        )  # fmt: skip
        events = list(app.store.events(flt))
    page = events[:limit]
    more = len(events) > limit
    return LogPage(items=[event_view(s) for s in page], next=page[-1].position if more else None)
