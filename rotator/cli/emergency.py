"""`rotator rotate --emergency`: the plan, the keys out of the signer, then revocation and
replacement (by the daemon, or here), and an exit code that says whether it is all done."""

from __future__ import annotations

import time

import click
from rich.table import Table

from ..bootstrap import Scope
from .base import get_app
from .render import add_row, console, say

EXIT_UNFINISHED = 3  # the keys left the signer, but revocation/replacement is not done yet


def run_emergency(
    ctx: click.Context,
    scope: Scope,
    actor: str,
    reason: str,
    dry_run: bool,
    wait_s: float,
    yes: bool = False,
) -> None:
    app = get_app(ctx, readonly=dry_run)
    plan = app.emergency.plan(scope)
    if not dry_run and not scope.everything:  # --all is confirmed with --yes already
        app.safety.check_command(
            len(plan.compromise), f"the emergency over {scope.describe()}", yes
        )
    table = Table("domain", "selector", "state", "action", title=f"emergency: {scope.describe()}")
    for k in plan.compromise:
        action = "stop signing, wipe key" if k.customer_managed else "stop signing, revoke now"
        add_row(table, k.domain, k.selector, k.state.value, action)
    for k in plan.promote:
        add_row(table, k.domain, k.selector, k.state.value, "switch to this standby key")
    console.print(table)
    if dry_run:
        say("dry run: nothing changed")
        return
    started = time.monotonic()
    declared = app.emergency.declare(plan, actor, reason)
    for target in declared.targets:
        _, left, out = target.detail.partition("; not signed here: ")
        state = f"keys removed{left}{out}" if target.ok else f"NOT rewritten: {target.detail}"
        say(f"  signer target {target.target}: {state}")
    if declared.signer_error is None:
        say(f"{len(plan.compromise)} keys out of every signer; revoking and replacing")
    else:
        say(
            "the compromise is recorded, but some signers still hold the keys; retrying "
            "while revoking and replacing"
        )
    follow = app.emergency_followup.run(
        plan, started + wait_s, resync=declared.signer_error is not None
    )
    signer_ok = declared.signer_error is None or follow.resynced
    if follow.daemon_pid is not None:
        say(f"daemon (pid {follow.daemon_pid}) woken up; follow it with `rotator status`")
    if follow.done and signer_ok:
        say("compromised keys revoked on every nameserver; replacements active")
        return
    if follow.daemon_pid is not None and wait_s <= 0 and signer_ok:
        return  # handed to the running daemon on purpose (--wait 0)
    for line in follow.left:
        say(f"  still to do: {line}")
    if not signer_ok:
        say(f"  still to do: rewrite the signer without the keys ({declared.signer_error})")
    say(f"not finished after {wait_s:g}s: {follow.who()}")
    ctx.exit(EXIT_UNFINISHED)
