"""GET /v1/status: the fleet at a glance, for a control panel or a monitor. What `rotator
status` prints below its table, and the overview page's counts."""

from __future__ import annotations

from pydantic import Field

from .base import Answer


class LeaderView(Answer):
    node: str
    epoch: int = Field(description="one more each time a node takes the lease")
    since: str = Field(description="when this node took the lease (ISO 8601 UTC)")
    expires: str = Field(description="when the lease runs out unless renewed (ISO 8601 UTC)")
    live: bool = Field(description="false: the lease ran out and no node leads")


class PoolLevel(Answer):
    algorithm: str
    bits: int
    keep: int = Field(description="keys the policies keep ready")
    have: int | None = Field(description="keys ready now; null when the pool cannot be read")


class StatusView(Answer):
    identities: int = Field(description="identities not removed")
    keys: dict[str, int] = Field(description="keys by state, every state named")
    problems: int = Field(description="keys and identities with a problem (see the page)")
    held: str | None = Field(description="what the safety valve holds or paces; null: nothing")
    pool: list[PoolLevel]
    shared: bool = Field(description="daemons share the database: `leader` says which leads")
    leader: LeaderView | None = Field(description="null: one node only, or none ever led")
    leader_error: str | None = Field(description="why the lease could not be read")
