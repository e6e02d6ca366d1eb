"""The webhooks' stream: subscriptions added, removed, parked after their retries ran
out, and resumed. The signing secret is never in the log (log readers hold no secrets);
deliveries are not events either (one per delivery would flood the audit log)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Event

WEBHOOK_STREAM = "webhooks"


@dataclass(frozen=True, kw_only=True)
class WebhookEvent(Event):
    subscription: str  # the subscription's id (whk_...)

    @property
    def stream_id(self) -> str:
        return WEBHOOK_STREAM


@dataclass(frozen=True, kw_only=True)
class WebhookSubscribed(WebhookEvent):
    """Deliver the log's events of these public types to `url`, from this event's
    position on."""

    url: str
    types: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class WebhookRemoved(WebhookEvent):
    """No more deliveries; the secret is wiped."""


@dataclass(frozen=True, kw_only=True)
class WebhookParked(WebhookEvent):
    """Every retry of the delivery of the event at `position` failed: deliveries stop
    there until an operator resumes (`rotator webhook resume`)."""

    position: int
    error: str
    attempts: int


@dataclass(frozen=True, kw_only=True)
class WebhookResumed(WebhookEvent):
    """An operator asked for the parked delivery to be tried again now."""
