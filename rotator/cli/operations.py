"""`rotator status`, `rotate` (scheduled and emergency), `run` and `demo`."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click
from rich.table import Table

from ..bootstrap import App, Requested, Scope
from ..domain.errors import RotatorError
from ..timeutil import iso, utcnow
from .base import get_app
from .emergency import run_emergency
from .options import audit_options
from .render import add_row, console, say, when


@click.command()
@click.option("--domain", "domain_name", default=None)
@click.option("--all", "show_all", is_flag=True, help="Include destroyed keys")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="JSON lines instead of a table; on a shared database the last line is the leader's",
)
@click.pass_context
def status(ctx: click.Context, domain_name: str | None, show_all: bool, as_json: bool) -> None:
    """Every key: domain, selector, state, since, next action and when; parked webhooks;
    which daemon leads when several share the database."""
    app = get_app(ctx, readonly=True)
    now = utcnow()
    rows = app.queries.status(domain_name, show_all)
    # a parked webhook is the fleet's, not a domain's: shown unless one domain is asked for
    hooks = [] if domain_name else app.webhooks.parked()
    if as_json:
        # the watch's customer-DNS findings too (same fields; selector "-", no key)
        want = domain_name.rstrip(".").lower() if domain_name else None
        dns = [
            r
            for r in app.queries.identity_notices()
            if r.state == "customer DNS" and want in (None, r.domain)
        ]
        for r in [*rows, *dns]:
            click.echo(
                json.dumps(
                    {
                        "domain": r.domain,
                        "identity": r.name,
                        "selector": r.selector,
                        "state": r.state,
                        "since": iso(r.since) if r.since else None,
                        "next_action": r.next_action,
                        "next_action_at": iso(r.next_action_at) if r.next_action_at else None,
                        "attempts": r.attempts,
                        "last_error": r.last_error,
                        "code": r.code,  # what kind of problem last_error is
                        "key_id": r.key_id,
                        "drift": r.drift,
                    }
                )
            )
        for h in hooks:  # the same fields, and the subscription's id
            click.echo(json.dumps({
                **NO_KEY, "state": "webhook parked",
                "since": iso(h.parked_since) if h.parked_since else None,
                "next_action": f"rotator webhook resume {h.id}", "last_error": h.parked,
                "webhook": h.id, "position": h.parked_at,
            }))  # fmt: skip
        lead = leader_json(app)
        if lead is not None:
            click.echo(json.dumps(lead))
        return
    table = Table("domain", "selector", "state", "since", "next action", "at", "problem")
    for r in rows:
        problems = [f"{r.attempts}x: {r.last_error}" if r.last_error else ""]
        problems.append(f"drift: {r.drift}" if r.drift else "")
        problem = "; ".join(p for p in problems if p)
        add_row(
            table,
            r.name,
            r.selector,
            r.state,
            when(r.since, now),
            r.next_action,
            when(r.next_action_at, now),
            problem,
        )
    for r in app.queries.identity_notices():
        add_row(
            table,
            r.name,
            "-",
            r.state,
            "-",
            r.next_action,
            when(r.next_action_at, now),
            r.last_error,
        )
    for h in hooks:
        add_row(table, f"webhook {h.id}", "-", "webhook parked", when(h.parked_since, now),
                f"`rotator webhook resume {h.id}`", "-",
                f"at log position {h.parked_at}: {h.parked}")  # fmt: skip
    console.print(table)
    leader = leader_line(app, now)
    if leader:
        say(leader)
    held = app.safety.held()
    if held:
        say(held)
    levels = app.keypool.levels()
    if levels and all(v.have is not None for v in levels):  # unreadable: not ours to show
        say(
            "key pool: " + ", ".join(f"{v.algorithm}-{v.bits} {v.have} of {v.keep}" for v in levels)
        )


# a line of `status --json` about no key (a parked webhook, the leader): a key row's fields,
# empty, so that a reader of the rows need not tell it apart
NO_KEY: dict[str, object] = {
    "domain": None, "identity": None, "selector": "-", "state": "", "since": None,
    "next_action": "", "next_action_at": None, "attempts": None, "last_error": None,
    "code": None, "key_id": None, "drift": "",
}  # fmt: skip


def leader_line(app: App, now: datetime) -> str:
    """Which daemon leads, when several share the database ("" with one node only)."""
    if not app.leadership.shared:
        return ""
    try:
        leader = app.leader()
    except RotatorError as exc:
        return f"leader unknown: {exc}"
    if leader is None:
        return "leader: none yet (no daemon has taken the lease)"
    if not leader.live:
        return (
            f"leader: none: node {leader.node}'s lease (epoch {leader.epoch}) ran out "
            f"{when(leader.expires, now)}"
        )
    return f"leader {leader.node} since {when(leader.since, now)} (epoch {leader.epoch})"


def leader_json(app: App) -> dict[str, object] | None:
    """The leader_line as the last line of `status --json`: a key's row fields (so that a
    reader of the rows need not tell it apart), state `leader`, `no leader` or `leader
    unknown`, and `leader` ({node, epoch, since, expires}, or null when no node leads);
    `last_leader` the same for a lease that ran out. None with one node only (no line, as
    the table has none)."""
    if not app.leadership.shared:
        return None
    row = {**NO_KEY, "state": "no leader", "leader": None, "last_leader": None}
    try:
        leader = app.leader()
    except RotatorError as exc:
        return {**row, "state": "leader unknown", "last_error": str(exc)}
    if leader is None:
        return {**row, "last_error": "no daemon has taken the lease"}
    lease = leader.as_json()
    if not leader.live:
        why = f"node {leader.node}'s lease (epoch {leader.epoch}) ran out"
        return {**row, "since": lease["expires"], "last_error": why, "last_leader": lease}
    return {**row, "state": "leader", "since": lease["since"], "leader": lease}


@click.command()
@click.argument("domain_name", metavar="[DOMAIN]", required=False)
@audit_options
@click.option(
    "--emergency",
    is_flag=True,
    help="Compromise: stop signing with the keys at once and revoke them, no drain",
)
@click.option("--selector", default="", help="--emergency: only this selector of DOMAIN")
@click.option("--customer", "customer_name", default="", help="--emergency: every customer key")
@click.option("--policy", "policy_name", default="", help="--emergency: every key of a policy")
@click.option("--all", "everything", is_flag=True, help="--emergency: every key (needs --yes)")
@click.option("--yes", is_flag=True, help="Confirm --all, or a scope above the safety limit")
@click.option(
    "--keystore-intact",
    is_flag=True,
    help="--all: only the signers' copies leaked; switch to the standby and pooled keys, "
    "which never left rotator's key store, instead of discarding them",
)
@click.option("--dry-run", is_flag=True, help="--emergency: print the plan, change nothing")
@click.option(
    "--wait",
    "wait_s",
    type=float,
    default=60.0,
    help="--emergency: seconds to wait for revocation and replacements (default 60); the "
    "command works on them itself when no daemon runs",
)
@click.pass_context
def rotate(
    ctx: click.Context,
    domain_name: str | None,
    reason: str,
    actor: str,
    emergency: bool,
    selector: str,
    customer_name: str,
    policy_name: str,
    everything: bool,
    yes: bool,
    keystore_intact: bool,
    dry_run: bool,
    wait_s: float,
) -> None:
    """Rotate DOMAIN now, or with --emergency take compromised keys out of service."""
    scoped = [bool(domain_name), bool(customer_name), bool(policy_name), everything]
    if not emergency:
        if any(scoped[1:]) or selector or dry_run or yes or keystore_intact:
            raise click.ClickException(
                "--selector, --customer, --policy, --all, --yes and --dry-run need --emergency"
            )
        if not domain_name:
            raise click.ClickException("give the DOMAIN to rotate (or --emergency with a scope)")
        app = get_app(ctx)
        say_requested(app.rotation.request(domain_name, actor, reason))
        # the second key of a two-algorithm policy rotates too: the operator asked for DOMAIN
        for companion, done in app.rotation.request_companions(domain_name, actor, reason):
            if isinstance(done, str):
                say(f"{companion.identity}: not rotated: {done}")
            else:
                say_requested(done)
        return
    if sum(scoped) != 1:
        raise click.ClickException(
            "--emergency needs exactly one scope: DOMAIN [--selector S], --customer NAME, "
            "--policy NAME or --all"
        )
    if selector and not domain_name:
        raise click.ClickException("--selector needs the DOMAIN it belongs to")
    if not reason.strip():
        raise click.ClickException("--emergency needs --reason: it goes into every event")
    if keystore_intact and not everything:
        raise click.ClickException(
            "--keystore-intact only changes --all (narrower scopes keep standby and pooled keys)"
        )
    if everything and not yes and not dry_run:
        raise click.ClickException(
            "--all revokes every key the ESP has (standby and pooled keys too, unless "
            "--keystore-intact); add --yes to confirm"
        )
    scope = Scope(
        domain=domain_name or "",
        selector=selector.lower(),
        customer=customer_name,
        policy=policy_name,
        everything=everything,
        keystore_intact=keystore_intact,
    )
    run_emergency(ctx, scope, actor, reason, dry_run, wait_s, yes)


def say_requested(done: Requested) -> None:
    name = done.identity.identity
    if not done.recorded:
        say(
            f"rotation of {name} already requested (due since {when(done.since)}); the "
            "daemon does it on its next tick"
        )
    elif done.switch:
        say(f"switch of {name} to its verified standby key requested; the daemon does it")
    else:
        say(f"rotation of {name} requested; the daemon does it on its next tick")


@click.command()
@click.argument("domain_name", metavar="DOMAIN")
@audit_options
@click.pass_context
def resume(ctx: click.Context, domain_name: str, actor: str, reason: str) -> None:
    """Try DOMAIN's parked steps again now (a step is parked after [retry] park_after
    failures in a row)."""
    keys = get_app(ctx).rotation.resume(domain_name, actor, reason)
    for key in keys:
        say(f"{key.selector} of {key.domain}: {key.next_action} resumed")


@click.command()
@click.option("--once", is_flag=True, help="Run one tick and exit (for cron or debugging)")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds")
@click.pass_context
def run(ctx: click.Context, once: bool, duration: float | None) -> None:
    """Run the daemon: advance every key whose next action is due, until SIGTERM."""
    app = get_app(ctx, daemon=not once)
    ctx.call_on_close(app.close)
    from ..daemon import Daemon  # the HTTP API and the scheduler: only the daemon needs them

    daemon = Daemon(app)
    if once:
        report = daemon.run_once()
        say(f"generated {report.generated}, succeeded {report.succeeded}, failed {report.failed}")
        if report.failed and not report.progressed:
            raise click.ClickException(
                f"every step failed ({report.failed}); `rotator status` shows why, and the "
                "next run retries them"
            )
        return
    daemon.run(duration=duration)


@click.command()
@click.option("--seconds", type=float, default=60.0, help="How long to run the daemon")
@click.option(
    "--workdir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to keep the demo's files (default: a new temporary directory)",
)
def demo(seconds: float, workdir: Path | None) -> None:
    """Run the daemon on the demo policy against two local BIND nameservers."""
    from ..demo import run_demo

    run_demo(seconds, workdir)
