"""`rotator domain ...` and `rotator esp add`: signing identities the ESP controls."""

from __future__ import annotations

import click
from rich.table import Table

from .base import RotatorGroup, get_app
from .customers import warn_zones
from .options import audit_options
from .render import add_row, console, say, when


@click.group(cls=RotatorGroup)
def domain() -> None:
    """Signing identities (d= domains)."""


@domain.command("add")
@click.argument("name")
@click.option("--policy", "policy_name", required=True, help="Policy name (policies/NAME.toml)")
@click.option(
    "--zone",
    default=None,
    help="DNS zone holding the records (default: the domain; e.g. "
    "myesp._domainkey.example.com for NS delegation)",
)
@click.option("--signing-pattern", default=None, help="SigningTable pattern (default *@DOMAIN)")
@audit_options
@click.pass_context
def domain_add(
    ctx: click.Context,
    name: str,
    policy_name: str,
    zone: str | None,
    signing_pattern: str | None,
    actor: str,
    reason: str,
) -> None:
    """Start managing DKIM keys for a domain: its first key is generated on the next tick."""
    app = get_app(ctx)
    ident = app.onboarding.add_identity(name, policy_name, zone, signing_pattern, actor, reason)
    warn_zones(app, [ident])
    say(
        f"added {ident.domain} (zone {ident.zone}, policy {ident.policy}); "
        "the daemon generates its first key on its next tick"
    )


@domain.command("list")
@click.pass_context
def domain_list(ctx: click.Context) -> None:
    app = get_app(ctx, readonly=True)
    table = Table("domain", "zone", "policy", "active key", "pending key", "rotation due")
    for row in app.queries.identities():
        add_row(
            table,
            row.domain,
            row.zone,
            row.policy,
            row.active_selector,
            row.pending_selector,
            when(row.rotation_due_at),
        )
    console.print(table)


@click.group(cls=RotatorGroup)
def esp() -> None:
    """The ESP's own signing domains (the feedback-loop signature)."""


@esp.command("add")
@click.argument("name")
@click.option("--policy", "policy_name", required=True)
@click.option("--zone", default=None, help="DNS zone holding its records (default: NAME)")
@audit_options
@click.pass_context
def esp_add(
    ctx: click.Context,
    name: str,
    policy_name: str,
    zone: str | None,
    actor: str,
    reason: str,
) -> None:
    """Manage keys for an ESP signing domain; customers opt in with --esp-signature."""
    app = get_app(ctx)
    ident = app.onboarding.add_esp(name, policy_name, zone, actor, reason)
    warn_zones(app, [ident])
    say(f"added ESP signing domain {ident.domain} (zone {ident.zone})")
