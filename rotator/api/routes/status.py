"""GET /v1/status: key counts by state, the identities, how many problems, the safety
valve, the key pool's levels and which daemon leads: O(states + problems), whatever the
number of keys (the overview page's aggregates)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from ...bootstrap import App, Token
from ...domain.errors import RotatorError
from ...statuspage.reading import build_overview
from ...timeutil import utcnow
from ..models.status import LeaderView, PoolLevel, StatusView
from ..state import ApiState, api_state, scoped

router = APIRouter(prefix="/v1", tags=["operations"])
State = Annotated[ApiState, Depends(api_state)]


@router.get("/status", summary="Keys by state, problems, the safety valve, the pool, the leader")
def fleet_status(state: State, _: Annotated[Token, scoped("read")]) -> StatusView:
    with state.use() as app:
        overview = build_overview(app, utcnow())
        held = app.safety.held() or None
        pool = pool_levels(app)
        leader, error = leader_of(app)
        shared = app.leadership.shared
    return StatusView(
        identities=overview.identities,
        keys=dict(overview.counts),
        problems=len(overview.problems),
        held=held,
        pool=pool,
        shared=shared,
        leader=leader,
        leader_error=error,
    )


def pool_levels(app: App) -> list[PoolLevel]:
    return [
        PoolLevel(algorithm=v.algorithm, bits=v.bits, keep=v.keep, have=v.have)
        for v in app.keypool.levels()
    ]


def leader_of(app: App) -> tuple[LeaderView | None, str | None]:
    try:
        leader = app.leader()
    except RotatorError as exc:
        return None, str(exc)
    if leader is None:
        return None, None
    return LeaderView.model_validate({**leader.as_json(), "live": leader.live}), None
