"""The audit trail: `rotator log`, `audit verify`, `db rebuild`."""

from __future__ import annotations

import dataclasses
import sys
import time

import click

from ..bootstrap import migrate, redact
from ..domain.errors import InputError
from ..domain.events import EVENT_TYPES
from ..logging import configure
from ..ports import LogFilter
from .base import RotatorGroup, config_of, get_app
from .render import clean, print_event, say, time_arg


@click.command()
@click.option("--domain", "domain_name", default=None)
@click.option("--selector", default=None)
@click.option("--key", "key_id", default=None)
@click.option("--customer", "customer_name", default=None, help="Every domain of a customer")
@click.option("--type", "types", multiple=True, help="Event type (repeatable), e.g. KeyRevoked")
@click.option("--actor", default=None)
@click.option("--since", default=None, help="ISO time or a duration ago, e.g. 2h or 7d")
@click.option("--until", default=None, help="ISO time or a duration ago")
@click.option("--limit", type=int, default=None)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events")
@click.pass_context
def log(
    ctx: click.Context,
    domain_name: str | None,
    selector: str | None,
    key_id: str | None,
    customer_name: str | None,
    types: tuple[str, ...],
    actor: str | None,
    since: str | None,
    until: str | None,
    limit: int | None,
    as_json: bool,
    follow: bool,
) -> None:
    """The audit log: every event, oldest first."""
    for t in types:
        if t not in EVENT_TYPES:
            raise InputError(
                f"--type: unknown event type {t!r}; use one of {', '.join(sorted(EVENT_TYPES))}"
            )
    app = get_app(ctx, readonly=True)
    flt = app.queries.log_filter(
        LogFilter(
            domain=domain_name,
            selector=selector,
            key_id=key_id,
            types=types,
            actor=actor,
            since=time_arg(since, "--since"),
            until=time_arg(until, "--until"),
            limit=limit,
        ),
        customer=customer_name,
    )
    last = 0
    while True:
        for stored in app.store.events(dataclasses.replace(flt, after_position=last)):
            print_event(stored, as_json)
            last = stored.position
        if not follow:
            return
        sys.stdout.flush()
        time.sleep(0.5)


@click.group(cls=RotatorGroup)
def db() -> None:
    """Database maintenance."""


@db.command("rebuild")
@click.option("--check", is_flag=True, help="Only compare; change nothing")
@click.pass_context
def db_rebuild(ctx: click.Context, check: bool) -> None:
    """Replay the event log into a fresh projection (and compare it with the live one)."""
    app = get_app(ctx, readonly=check)
    diffs = app.store.rebuild(check_only=check)
    for d in diffs:
        click.echo(clean(d))
    if check:
        if diffs:
            raise click.ClickException(f"{len(diffs)} differences between log and projection")
        say("projection matches the event log")
    else:
        say(f"projection rebuilt from the log ({len(diffs)} differences repaired)")


@db.command("migrate")
@click.option("--to", "url", required=True, help="The empty PostgreSQL database, postgresql://...")
@click.pass_context
def db_migrate(ctx: click.Context, url: str) -> None:
    """Copy this SQLite database's log into an empty PostgreSQL database (positions,
    hashes and MACs kept), rebuild the projection there and audit it. Stop the daemon
    first; the SQLite file is only read."""
    config = config_of(ctx)
    configure(ctx.find_root().obj.get("log_format") or config.log_format)
    done, moves = migrate(config, url)
    head = f"{done.head[0]} {done.head[1]}" if done.head else "none (the log is empty)"
    say(f"copied {done.events} events ({done.sealed} sealed) into {redact(url)}")
    say(f"projection rebuilt there: {done.keys} keys, {done.identities} identities")
    say(f"hash chain intact, every MAC valid; audit head {head}, the same as before")
    say("to use it, in rotator.toml:")
    say(f'  database = "{url}"')
    say(f'  state_dir = "{config.database.state_dir}"')
    for old, new in moves:
        say(f"and rename {old} to {new}")


@click.group(cls=RotatorGroup)
def audit() -> None:
    """Audit log integrity."""


@audit.command("verify")
@click.pass_context
def audit_verify(ctx: click.Context) -> None:
    """Check the hash chain, every MAC (audit key) and the anchor; report what breaks."""
    app = get_app(ctx, readonly=True)
    report = app.store.audit()
    if report.problem:
        raise click.ClickException(f"hash chain broken: {report.problem}")
    for line in report.bad_macs[:20]:
        say(f"  {line}")
    if report.bad_macs:
        raise click.ClickException(
            f"{len(report.bad_macs)} MACs do not match: the database was written by "
            "something other than rotator"
        )
    if report.anchor:
        raise click.ClickException(report.anchor)
    if report.head:
        raise click.ClickException(
            f"{report.head}: the database was written by something other than rotator"
        )
    say(f"hash chain intact over {report.events} events")
    if not app.store.keyed():
        say(
            f"MACs not checked: the audit key {app.config.audit.key_file} cannot be read by "
            "this user (run as rotator's user to check them)"
        )
    else:
        say(
            f"{report.sealed} sealed events, every projection row and the projection's head "
            "carry valid MACs"
        )
    anchor = app.store.anchored()
    if anchor is not None:
        say(f"the log agrees with every line of the anchor {anchor}")


@audit.command("head")
@click.pass_context
def audit_head(ctx: click.Context) -> None:
    """The newest event's position and hash: the value to keep somewhere else (O(1))."""
    app = get_app(ctx, readonly=True)
    head = app.store.head()
    if head is None:
        raise click.ClickException("the log is empty")
    click.echo(f"{head[0]} {head[1]}")
