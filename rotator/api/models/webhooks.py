"""A webhook subscription and how far its delivery got; its secret only in the answer
that made it."""

from __future__ import annotations

from pydantic import Field

from .base import Answer


class Webhook(Answer):
    id: str
    url: str
    events: list[str] = Field(description="the event types delivered (empty: all)")
    since_position: int = Field(description="events after this log position are delivered")
    delivered_position: int | None = Field(description="the last delivery acknowledged")
    parked: str | None = Field(description="why deliveries stopped, until resumed")
    parked_at_position: int | None


class WebhookCreated(Webhook):
    secret: str = Field(description="signs the deliveries; shown this once")


class Webhooks(Answer):
    webhooks: list[Webhook]


class WebhookRemoved(Answer):
    removed: str
