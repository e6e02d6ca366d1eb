"""Webhook subscriptions over the API, as `rotator webhook add|list|remove|resume` does them
(admin scope: a subscription decides where the fleet's events go)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ...bootstrap import WEBHOOK_TYPES, App, Subscription, Token
from ..models.webhooks import Webhook, WebhookCreated, WebhookRemoved, Webhooks
from ..state import ApiState, api_state, scoped
from .common import Write, writes

router = APIRouter(prefix="/v1", tags=["webhooks"])
State = Annotated[ApiState, Depends(api_state)]


class NewWebhook(BaseModel):
    url: str = Field(max_length=2000, description="http:// or https://, receives POSTs")
    events: list[str] = Field(
        default_factory=list,
        description=f"public event types (empty: all): {', '.join(sorted(WEBHOOK_TYPES))}",
    )
    reason: str = Field("", max_length=1000)


# not "Reason": the document names the enum of problem codes so
class WebhookReason(BaseModel):
    reason: str = Field("", max_length=1000)


def view(app: App, sub: Subscription) -> Webhook:
    return Webhook(
        id=sub.id,
        url=sub.url,
        events=list(sub.types),
        since_position=sub.since,
        delivered_position=app.webhooks.cursor(sub),
        parked=sub.parked,
        parked_at_position=sub.parked_at,
    )


@router.get("/webhooks", summary="The webhook subscriptions and how far delivery got")
def list_webhooks(state: State, _: Annotated[Token, scoped("admin")]) -> Webhooks:
    with state.use() as app:
        return Webhooks(webhooks=[view(app, s) for s in app.webhooks.list()])


@router.post(
    "/webhooks",
    status_code=201,
    response_model=WebhookCreated,
    summary="Subscribe a URL (the secret shown once)",
)
def add_webhook(body: NewWebhook, write: Annotated[Write, writes("admin")]) -> JSONResponse:
    def run(app: App, reason: str) -> tuple[int, WebhookCreated]:
        sub, secret = app.webhooks.add(body.url, body.events, write.actor, reason)
        return 201, WebhookCreated(**dict(view(app, sub)), secret=secret)

    return write(body, run)


@router.delete(
    "/webhooks/{subscription}",
    response_model=WebhookRemoved,
    summary="Stop delivering to a subscription",
)
def remove_webhook(
    subscription: str, body: WebhookReason, write: Annotated[Write, writes("admin")]
) -> JSONResponse:
    def run(app: App, reason: str) -> tuple[int, WebhookRemoved]:
        app.webhooks.remove(subscription, write.actor, reason)
        return 200, WebhookRemoved(removed=subscription)

    return write(body, run)


@router.post(
    "/webhooks/{subscription}/resume",
    response_model=Webhook,
    summary="Deliver again after a park",
)
def resume_webhook(
    subscription: str, body: WebhookReason, write: Annotated[Write, writes("admin")]
) -> JSONResponse:
    def run(app: App, reason: str) -> tuple[int, Webhook]:
        return 200, view(app, app.webhooks.resume(subscription, write.actor, reason))

    return write(body, run)
