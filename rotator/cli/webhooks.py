"""`rotator webhook`: subscriptions to events (add, list, remove, resume); the daemon
delivers them."""

from __future__ import annotations

import json

import click
from rich.table import Table

from ..bootstrap import WEBHOOK_TYPES, Subscription
from .base import RotatorGroup, get_app
from .options import audit_options
from .render import add_row, console, say


@click.group(cls=RotatorGroup)
def webhook() -> None:
    """Webhooks: POST chosen events, signed, to a receiver's URL."""


@webhook.command("add")
@click.argument("url")
@click.option(
    "--event",
    "events",
    multiple=True,
    type=click.Choice(WEBHOOK_TYPES),
    help="An event type to deliver (repeat it; default: every type)",
)
@audit_options
@click.pass_context
def webhook_add(
    ctx: click.Context, url: str, events: tuple[str, ...], actor: str, reason: str
) -> None:
    """Subscribe URL to events; prints its id and signing secret (shown this once)."""
    app = get_app(ctx)
    sub, secret = app.webhooks.add(url, events, actor, reason)
    say(f"webhook {sub.id} -> {sub.url}: {', '.join(sub.types)}")
    say(f"secret: {secret}")
    say("keep it now: receivers check each webhook-signature with it; it is not shown again")


def _state(sub: Subscription) -> str:
    if sub.removed:
        return "removed"
    if sub.parked is not None:
        return f"PARKED at position {sub.parked_at}: {sub.parked}"
    return "delivering"


@webhook.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line")
@click.pass_context
def webhook_list(ctx: click.Context, as_json: bool) -> None:
    """The subscriptions, how far their deliveries got, and why any is parked."""
    app = get_app(ctx, readonly=True)
    subs = app.webhooks.list()
    if as_json:
        for sub in subs:
            click.echo(json.dumps({
                "id": sub.id, "url": sub.url, "types": list(sub.types), "since": sub.since,
                "delivered_to": app.webhooks.cursor(sub), "parked": sub.parked,
                "parked_at": sub.parked_at,
            }, sort_keys=True))  # fmt: skip
        return
    if not subs:
        say("no webhooks; add one with `rotator webhook add URL`")
        return
    table = Table("id", "url", "events", "delivered to", "state", title="webhooks")
    for sub in subs:
        add_row(table, sub.id, sub.url, " ".join(sub.types), app.webhooks.cursor(sub), _state(sub))
    console.print(table)


@webhook.command("remove")
@click.argument("subscription", metavar="ID")
@audit_options
@click.pass_context
def webhook_remove(ctx: click.Context, subscription: str, actor: str, reason: str) -> None:
    """Stop delivering to a subscription and wipe its secret."""
    get_app(ctx).webhooks.remove(subscription, actor, reason)
    say(f"webhook {subscription} removed")


@webhook.command("resume")
@click.argument("subscription", metavar="ID")
@audit_options
@click.pass_context
def webhook_resume(ctx: click.Context, subscription: str, actor: str, reason: str) -> None:
    """Deliver a parked subscription's events again, from the one that failed."""
    sub = get_app(ctx).webhooks.resume(subscription, actor, reason)
    say(f"webhook {sub.id} resumed: the daemon delivers from where it stopped")
