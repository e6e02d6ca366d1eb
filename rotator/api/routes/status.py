"""GET /v1/status: key counts by state, the identities, how many problems, the safety
valve, the key pool's levels and which daemon leads: O(states + problems), whatever the
number of keys (the overview page's aggregates)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from ...bootstrap import App, Token
from ...domain.errors import RotatorError
from ...statuspage.reading import build_overview
from ...timeutil import iso, utcnow
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
    pool = app.ctx.keypool
    have: dict[tuple[str, int], int] | None = None
    if pool is not None:
        try:
            have = pool.counts()
        except OSError:  # another user's key store: not ours to look into
            have = None
    return [
        PoolLevel(algorithm=a, bits=b, keep=n, have=None if have is None else have.get((a, b), 0))
        for (a, b), n in sorted(app.ctx.pool_sizes.items())
    ]


def leader_of(app: App) -> tuple[LeaderView | None, str | None]:
    try:
        leader = app.leader()
    except RotatorError as exc:
        return None, str(exc)
    if leader is None:
        return None, None
    view = LeaderView(
        node=leader.node,
        epoch=leader.epoch,
        since=iso(leader.since),
        expires=iso(leader.expires),
        live=leader.live,
    )
    return view, None
