"""`rotator token ...`: the HTTP API's bearer tokens (create shows the secret once)."""

from __future__ import annotations

import click
from rich.table import Table

from ..bootstrap import SCOPES
from .base import RotatorGroup, get_app
from .options import audit_options
from .render import add_row, console, say, warn


@click.group(cls=RotatorGroup)
def token() -> None:
    """Bearer tokens of the HTTP API ([api] listen)."""


@token.command("create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(SCOPES),
    help="What the token may do (repeatable); admin holds every scope",
)
@audit_options
@click.pass_context
def token_create(
    ctx: click.Context, name: str, scopes: tuple[str, ...], actor: str, reason: str
) -> None:
    """Create a token; its secret is printed once, on standard output, and kept nowhere."""
    app = get_app(ctx)
    created, secret = app.tokens.create(name, scopes, actor, reason)
    warn(f"token {created.name} ({', '.join(created.scopes)}): shown once, store it now")
    click.echo(secret)


@token.command("list")
@click.pass_context
def token_list(ctx: click.Context) -> None:
    """The live tokens (names and scopes; secrets are not kept)."""
    app = get_app(ctx, readonly=True)
    table = Table("name", "scopes", "created by", "log position")
    for t in app.tokens.list():
        add_row(table, t.name, " ".join(t.scopes), t.created_by, str(t.position))
    console.print(table)


@token.command("revoke")
@click.argument("name")
@audit_options
@click.pass_context
def token_revoke(ctx: click.Context, name: str, actor: str, reason: str) -> None:
    """Revoke a token: the API refuses it from its next request on."""
    app = get_app(ctx)
    app.tokens.revoke(name, actor, reason)
    say(f"token {name} revoked")
