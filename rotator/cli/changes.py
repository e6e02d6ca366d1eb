"""`rotator domain remove|set-policy|set-mode` and `rotator customer remove`: customers
leave, change policy, change delegation mode."""

from __future__ import annotations

import click
from rich.table import Table

from ..bootstrap import App
from ..domain.model import IdentityState
from ..domain.states import Mode
from .base import RotatorGroup, get_app
from .customers import customer, warn_zones
from .identities import domain
from .options import audit_options, removal_options
from .render import add_row, console, say, when

MODES = [m.value for m in Mode]


def _remove(
    ctx: click.Context, app: App, idents: list[IdentityState], now: bool, dry_run: bool,
    yes: bool, actor: str, reason: str,
) -> None:  # fmt: skip
    removal = app.offboarding.plan(idents, now)
    if not dry_run:
        names = ", ".join(i.domain for i in idents[:3]) + (" ..." if len(idents) > 3 else "")
        count = len(removal.draining) + len(removal.withdrawn)
        app.safety.check_command(count, f"removing {names}", yes)
    table = Table("domain", "selector", "state", "action", title="remove")
    for k in removal.draining:
        action = "stop signing, revoke now" if now else "stop signing, drain, then revoke"
        add_row(table, k.domain, k.selector, k.state.value, action)
    for k in removal.withdrawn:
        add_row(table, k.domain, k.selector, k.state.value, "withdraw (never signed)")
    console.print(table)
    if dry_run:
        say("dry run: nothing changed")
        return
    done = app.offboarding.remove(removal, now, actor, reason)
    outcome = done.outcome
    for target in outcome.targets:
        _, left, out = target.detail.partition("; not signed here: ")
        state = f"keys removed{left}{out}" if target.ok else f"NOT rewritten: {target.detail}"
        say(f"  signer target {target.target}: {state}")
    names = ", ".join(i.domain for i in done.identities)
    say(f"removed {names}: signs nothing from now on; the daemon revokes and destroys its keys")
    drains = [app.ctx.policy(k.policy).drain_until(app.ctx.clock.now()) for k in done.draining]
    after = f" after {when(max(drains))}" if drains and not now else ""
    for ident in done.identities:
        records = done.customer_dns.get(ident.identity, [])
        if records:
            say(f"{ident.domain}: the customer may remove these records from their DNS{after}:")
            for line in records:
                say(f"  {line}")
    if outcome.signer_error:
        say(f"some signer targets still hold the keys ({outcome.signer_error}); the daemon retries")
        ctx.exit(3)


@domain.command("remove")
@click.argument("name")
@removal_options
@click.pass_context
def domain_remove(
    ctx: click.Context, name: str, now: bool, dry_run: bool, yes: bool, actor: str, reason: str
) -> None:
    """Stop signing for a domain: its keys drain, are revoked and destroyed."""
    app = get_app(ctx, readonly=dry_run)
    _remove(ctx, app, app.offboarding.domain(name), now, dry_run, yes, actor, reason)


@customer.command("remove")
@click.argument("name")
@removal_options
@click.pass_context
def customer_remove(
    ctx: click.Context, name: str, now: bool, dry_run: bool, yes: bool, actor: str, reason: str
) -> None:
    """Offboard a customer: every domain of theirs stops signing and its keys go."""
    app = get_app(ctx, readonly=dry_run)
    _remove(ctx, app, app.offboarding.customer(name), now, dry_run, yes, actor, reason)


@click.group(cls=RotatorGroup)
def safety() -> None:
    """The safety valve: work held because it touched too many keys at once."""


@safety.command("release")
@audit_options
@click.pass_context
def safety_release(ctx: click.Context, actor: str, reason: str) -> None:
    """Let the held revocations and replacements go ahead (once checked)."""
    app = get_app(ctx)
    app.safety.release(actor, reason)
    say("released: the daemon goes ahead on its next tick; the valve re-arms once under the limit")


@domain.command("set-policy")
@click.argument("name")
@click.argument("policy_name", metavar="POLICY")
@click.option("--rotate-now", is_flag=True, help="Make the next key now, not at the next rotation")
@audit_options
@click.pass_context
def domain_set_policy(
    ctx: click.Context, name: str, policy_name: str, rotate_now: bool, actor: str, reason: str
) -> None:
    """Move a domain to another policy: its next key follows it."""
    app = get_app(ctx)
    changed = app.changes.set_policy(name, policy_name, rotate_now, actor, reason)
    ident = changed.identity
    if changed.rotating:
        say(f"{ident.domain} follows policy {ident.policy}; its next key is made on the next tick")
    else:
        due = when(ident.rotation_due_at) if ident.rotation_due_at else "its next rotation"
        say(f"{ident.domain} follows policy {ident.policy} from its next key ({due})")


@domain.command("set-mode")
@click.argument("name")
@click.argument("mode", type=click.Choice(MODES))
@click.option("--zone", default=None, help="The zone of the new mode (default: derived)")
@click.option("--signing-domain", default="", help="To third-party: the ESP domain that signs")
@click.option("--rotate-now", is_flag=True, help="Make the next key now, not at the next rotation")
@audit_options
@click.pass_context
def domain_set_mode(
    ctx: click.Context,
    name: str,
    mode: str,
    zone: str | None,
    signing_domain: str,
    rotate_now: bool,
    actor: str,
    reason: str,
) -> None:
    """Move a domain to another delegation mode; the active key signs until the new mode's
    key is verified through the new path."""
    app = get_app(ctx)
    changed = app.changes.set_mode(
        name, Mode(mode), zone, rotate_now, actor, reason, signing_domain
    )
    ident = changed.identity
    warn_zones(app, [ident])
    say(f"{ident.domain} moves to {ident.mode} (zone {ident.zone}); the active key signs meanwhile")
    if changed.explanation:
        say(changed.explanation)
    for line in changed.records:
        say(f"  {line}")
    if changed.records:
        say("until these are in place, the new key waits: `rotator status` says so")
