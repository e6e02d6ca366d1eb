"""What the fleet-wide operations answer: an emergency (or its plan), the safety valve,
the key pool, pages of the audit log."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ...domain.states import State
from .base import Answer, SignerResult


class Compromised(Answer):
    domain: str
    selector: str
    state: State
    customer_managed: bool = Field(description="the customer publishes it: they must revoke")


class Promoted(Answer):
    """A standby key that takes over at once."""

    domain: str
    selector: str


class EmergencyPlan(Answer):
    """A dry run: what the emergency would take out; nothing was done."""

    scope: str
    dry_run: bool
    compromise: list[Compromised]
    promote: list[Promoted]


class EmergencyDeclared(EmergencyPlan):
    signers: list[SignerResult] = Field(description="the compromised keys out of the signers")
    signer_error: str | None


class SafetyState(Answer):
    held: str | None = Field(description="what is held or paced; null when nothing is")


class Released(Answer):
    released: bool


class PoolKind(Answer):
    algorithm: str
    bits: int
    keep: int = Field(description="keys the pool holds ready")


class PoolFill(Answer):
    kinds: list[PoolKind]


class EventView(Answer):
    """An event as `rotator log --json` prints it."""

    position: int
    at: str = Field(description="ISO 8601 UTC")
    type: str
    domain: str | None
    identity: str | None
    selector: str | None
    key_id: str | None
    actor: str
    origin: str | None
    reason: str
    payload: dict[str, Any] = Field(description="the fields of this event type")
    hash: str = Field(description="the audit chain's hash up to this event")


class LogPage(Answer):
    items: list[EventView]
    next: int | None = Field(description="the next page's `after`; null on the last page")
