"""Operator commands. Every error is one line naming what is wrong and how to fix it, with
a non-zero exit and no change to state."""

from __future__ import annotations

import getpass
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from . import __version__
from .config import load_config
from .domain.errors import RotatorError
from .domain.events import EVENT_TYPES
from .domain.policy import format_duration, parse_duration
from .domain.record import split_strings
from .domain.states import State
from .logging import configure
from .ports import LogFilter, StoredEvent
from .timeutil import iso, parse_iso, utcnow

# Piped output (scripts, tests, `| grep`) gets a wide table instead of 80-column wrapping.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True)


class RotatorGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RotatorError as exc:
            raise click.ClickException(str(exc)) from None


def _actor(value: str | None) -> str:
    if value:
        return value
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


@click.group(cls=RotatorGroup)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    envvar="ROTATOR_CONFIG",
    help="rotator.toml (default /etc/rotator/rotator.toml, or $ROTATOR_CONFIG)",
)
@click.option(
    "--log-format",
    type=click.Choice(["auto", "json", "console"]),
    default=None,
    help="Log rendering (default from the config: auto = console on a TTY)",
)
@click.version_option(__version__, prog_name="rotator")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, log_format: str | None) -> None:
    """rotator: DKIM key rotation orchestrator."""
    ctx.obj = {"config_path": config_path, "log_format": log_format}


def _app(ctx: click.Context) -> Any:
    from .daemon import build

    obj = ctx.find_root().obj
    if "app" not in obj:
        config = load_config(obj["config_path"])
        configure(obj["log_format"] or config.log_format)
        obj["app"] = build(config)
    return obj["app"]


# --- setup ---------------------------------------------------------------------------------


@cli.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Check the config and policies, create the database and key directory."""
    app = _app(ctx)
    cfg = app.config
    console.print(f"config      {cfg.path}")
    console.print(f"database    {cfg.database} ({app.store.info()['events']} events)")
    console.print(f"key_dir     {cfg.key_dir} (mode 0700)")
    console.print(f"policies    {', '.join(app.policies.names()) or 'none'} in {cfg.policy_dir}")
    console.print(
        f"dns primary {cfg.dns.primary}:{cfg.dns.primary_port} (TSIG {cfg.dns.tsig_name})"
    )


@cli.group(cls=RotatorGroup)
def policy() -> None:
    """Policies (policies/*.toml)."""


@policy.command("check")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.pass_context
def policy_check(ctx: click.Context, files: tuple[Path, ...]) -> None:
    """Validate policy files (default: every policy in policy_dir) and show their windows."""
    from .policies import PolicySet, load_policy_file

    if files:
        pols = [load_policy_file(f) for f in files]
    else:
        cfg = load_config(ctx.find_root().obj["config_path"])
        pols = list(PolicySet(cfg.policy_dir).policies.values())
    table = Table("policy", "key", "rotation", "drain window", "ttl", "selector", "tombstone")
    for p in pols:
        table.add_row(
            p.name,
            f"{p.algorithm}-{p.bits}",
            p.schedule.describe(),
            f"{format_duration(p.drain_window)} ({p.drain_multiplier:g} x "
            f"{format_duration(p.max_queue_time)})",
            str(p.ttl),
            p.selector_template,
            format_duration(p.tombstone_retention),
        )
    console.print(table)


@cli.group(cls=RotatorGroup)
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
@click.option("--actor", default=None, help="Operator name for the audit log (default: $USER)")
@click.option("--reason", default="", help="Why, for the audit log")
@click.pass_context
def domain_add(
    ctx: click.Context,
    name: str,
    policy_name: str,
    zone: str | None,
    signing_pattern: str | None,
    actor: str | None,
    reason: str,
) -> None:
    """Start managing DKIM keys for a domain: its first key is generated on the next tick."""
    app = _app(ctx)
    ident = app.service.add_identity(
        name, policy_name, zone, signing_pattern, _actor(actor), reason
    )
    console.print(
        f"added {ident.domain} (zone {ident.zone}, policy {ident.policy}); "
        "the daemon generates its first key on its next tick"
    )


@domain.command("list")
@click.pass_context
def domain_list(ctx: click.Context) -> None:
    app = _app(ctx)
    table = Table("domain", "zone", "policy", "active key", "pending key", "rotation due")
    for i in app.store.identities():
        active = app.store.key(i.active_key) if i.active_key else None
        pending = app.store.key(i.pending_key) if i.pending_key else None
        table.add_row(
            i.domain,
            i.zone,
            i.policy,
            active.selector if active else "-",
            pending.selector if pending else "-",
            _when(i.rotation_due_at),
        )
    console.print(table)


@cli.group(cls=RotatorGroup)
def esp() -> None:
    """The ESP's own signing domains (the feedback-loop signature)."""


@esp.command("add")
@click.argument("name")
@click.option("--policy", "policy_name", required=True)
@click.option("--zone", default=None, help="DNS zone holding its records (default: NAME)")
@click.option("--actor", default=None)
@click.option("--reason", default="")
@click.pass_context
def esp_add(
    ctx: click.Context,
    name: str,
    policy_name: str,
    zone: str | None,
    actor: str | None,
    reason: str,
) -> None:
    """Manage keys for an ESP signing domain; customers opt in with --esp-signature."""
    app = _app(ctx)
    ident = app.service.add_esp(name, policy_name, zone, _actor(actor), reason)
    console.print(f"added ESP signing domain {ident.domain} (zone {ident.zone})")


@cli.group(cls=RotatorGroup)
def customer() -> None:
    """Customers: onboarding, bulk import, checks of their DNS."""


MODES = ["ns-delegation", "third-party", "cname", "ping-pong", "customer-key"]


@customer.command("add")
@click.argument("name")
@click.option("--domain", "domain_name", required=True, help="The customer's sending domain")
@click.option("--mode", type=click.Choice(MODES), required=True)
@click.option("--policy", "policy_name", required=True)
@click.option(
    "--signing-domain",
    default="",
    help="third-party: the ESP-controlled domain that signs (d=) for the customer",
)
@click.option("--zone", default="", help="third-party: zone of the signing domain's records")
@click.option("--esp-signature", default="", help="Also sign with this ESP signing domain")
@click.option("--actor", default=None)
@click.option("--reason", default="")
@click.pass_context
def customer_add(
    ctx: click.Context,
    name: str,
    domain_name: str,
    mode: str,
    policy_name: str,
    signing_domain: str,
    zone: str,
    esp_signature: str,
    actor: str | None,
    reason: str,
) -> None:
    """Onboard a customer domain and print exactly what their IT must add to DNS."""
    from .service import CustomerRow

    app = _app(ctx)
    row = CustomerRow(name, domain_name, mode, policy_name, signing_domain, esp_signature, zone)
    (ident,) = app.service.add_customers([row], _actor(actor), reason)
    _print_onboarding(app, ident)


def _print_onboarding(app: Any, ident: Any) -> None:
    text, records = app.service.onboarding(ident)
    console.print(f"[bold]{ident.customer}[/]: {ident.mode}, d={ident.domain}, zone {ident.zone}")
    console.print(text)
    for line in records:
        click.echo(line)


@customer.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--actor", default=None)
@click.option("--reason", default="")
@click.pass_context
def customer_import(ctx: click.Context, csv_file: Path, actor: str | None, reason: str) -> None:
    """Onboard many customers from CSV (columns: customer, domain, mode, policy, and
    optionally signing_domain, esp_signature, zone). Every row is checked before anything is
    added; a bad row names its line and field and adds nothing."""
    import csv

    from rich.progress import track

    from .service import CustomerRow

    app = _app(ctx)
    with csv_file.open(newline="") as fh:
        reader = csv.DictReader(fh)
        required = {"customer", "domain", "mode", "policy"}
        missing = required - set(reader.fieldnames or [])
        if missing:
            raise click.ClickException(
                f"{csv_file}: header lacks {', '.join(sorted(missing))}; expected "
                "customer,domain,mode,policy[,signing_domain,esp_signature,zone]"
            )
        rows = [
            CustomerRow(
                customer=r.get("customer") or "",
                domain=r.get("domain") or "",
                mode=r.get("mode") or "",
                policy=r.get("policy") or "",
                signing_domain=r.get("signing_domain") or "",
                esp_signature=r.get("esp_signature") or "",
                zone=r.get("zone") or "",
                where=f"{csv_file.name} line {reader.line_num}",
            )
            for r in reader
        ]
    if not rows:
        raise click.ClickException(f"{csv_file}: no customer rows")
    added = app.service.add_customers(
        rows,
        _actor(actor),
        reason,
        progress=lambda it: track(
            it, description="checking rows", total=len(rows), console=err_console, transient=True
        ),
    )
    for ident in track(added, description="onboarding text", console=err_console, transient=True):
        _print_onboarding(app, ident)
    console.print(f"imported {len(added)} customer domains from {csv_file}")


@customer.command("import-key")
@click.argument("domain_name", metavar="DOMAIN")
@click.option("--selector", required=True, help="The selector the customer publishes under")
@click.option(
    "--key",
    "key_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The customer's private key (unencrypted PEM)",
)
@click.option("--actor", default=None)
@click.option("--reason", default="")
@click.pass_context
def customer_import_key(
    ctx: click.Context,
    domain_name: str,
    selector: str,
    key_file: Path,
    actor: str | None,
    reason: str,
) -> None:
    """Take a customer-generated key (customer-key mode): rotator verifies the customer's
    record on every nameserver of their zone, then signs with it."""
    app = _app(ctx)
    key = app.service.import_key(
        domain_name, selector, key_file.read_bytes(), _actor(actor), reason
    )
    console.print(
        f"imported {key.selector} for {key.domain} (fingerprint {key.fingerprint[:16]}); "
        "the customer must publish:"
    )
    text = " ".join(f'"{c.decode()}"' for c in split_strings(key.record))
    click.echo(f"{key.record_name} 3600 IN TXT ( {text} )")


@customer.command("list")
@click.pass_context
def customer_list(ctx: click.Context) -> None:
    app = _app(ctx)
    table = Table("customer", "mode", "d=", "zone", "signs mail of", "esp signature")
    for i in app.store.identities():
        if i.customer:
            table.add_row(
                i.customer, i.mode, i.domain, i.zone, i.signing_pattern, i.esp_identity or "-"
            )
    console.print(table)


@customer.command("check")
@click.argument("name")
@click.pass_context
def customer_check(ctx: click.Context, name: str) -> None:
    """Report which of the customer's required DNS records are present and which missing."""
    app = _app(ctx)
    idents = [i for i in app.store.identities() if i.customer == name]
    if not idents:
        raise click.ClickException(f"no customer named {name!r}; see `rotator customer list`")
    missing = 0
    for ident in idents:
        _, records = app.service.onboarding(ident)
        problem = app.service.check_customer_dns(ident)
        state = "[red]missing[/]" if problem else "[green]present[/]"
        if not records:
            console.print(f"{ident.domain}: nothing required from the customer ({ident.mode})")
            continue
        console.print(f"{ident.domain}: {ident.mode} records {state}")
        for line in records:
            click.echo(f"  {line}")
        if problem:
            missing += 1
            console.print(f"  {problem}")
    if missing:
        raise click.ClickException(f"{missing} of {len(idents)} domains await customer DNS")


# --- operations ---------------------------------------------------------------------------


@cli.command()
@click.option("--domain", "domain_name", default=None)
@click.option("--all", "show_all", is_flag=True, help="Include destroyed keys")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table")
@click.pass_context
def status(ctx: click.Context, domain_name: str | None, show_all: bool, as_json: bool) -> None:
    """Every key: domain, selector, state, since, next action and when."""
    app = _app(ctx)
    now = utcnow()
    idents = {i.identity: i for i in app.store.identities()}
    rows = []
    for k in app.store.list_keys():
        if domain_name and k.domain != domain_name.rstrip(".").lower():
            continue
        if k.state is State.DESTROYED and k.tombstone_removed and not show_all:
            continue
        nxt, at = (k.next_action.value if k.next_action else "-"), k.next_action_at
        ident = idents.get(k.identity)
        if k.state is State.ACTIVE and ident is not None:
            if ident.pending_key:
                nxt, at = "await successor", None
            else:
                nxt, at = "rotate", ident.rotation_due_at
        rows.append(
            {
                "domain": k.domain,
                "selector": k.selector,
                "state": k.state.value,
                "since": iso(k.since),
                "next_action": nxt,
                "next_action_at": iso(at) if at else None,
                "attempts": k.attempts,
                "last_error": k.last_error,
                "key_id": k.key_id,
            }
        )
    if as_json:
        for r in rows:
            click.echo(json.dumps(r))
        return
    table = Table("domain", "selector", "state", "since", "next action", "at", "problem")
    for r in rows:
        problem = f"{r['attempts']}x: {r['last_error']}" if r["last_error"] else ""
        table.add_row(
            r["domain"],
            r["selector"],
            r["state"],
            _ago(r["since"], now),
            r["next_action"],
            _when(r["next_action_at"], now),
            problem,
        )
    for i in idents.values():
        if i.notice:
            table.add_row(
                i.domain, "-", "notice", "-", "rotate", _when(i.rotation_due_at, now), i.notice
            )
        elif i.active_key is None and i.pending_key is None:
            table.add_row(
                i.domain, "-", "no key yet", "-", "generate", _when(i.rotation_due_at, now), ""
            )
    console.print(table)


@cli.command()
@click.argument("domain_name", metavar="[DOMAIN]", required=False)
@click.option("--reason", default="", help="Why, for the audit log")
@click.option("--actor", default=None, help="Operator name for the audit log (default: $USER)")
@click.option(
    "--emergency",
    is_flag=True,
    help="Compromise: stop signing with the keys at once and revoke them, no drain",
)
@click.option("--selector", default="", help="--emergency: only this selector of DOMAIN")
@click.option("--customer", "customer_name", default="", help="--emergency: every customer key")
@click.option("--policy", "policy_name", default="", help="--emergency: every key of a policy")
@click.option("--all", "everything", is_flag=True, help="--emergency: every key (needs --yes)")
@click.option("--yes", is_flag=True, help="Confirm --all")
@click.option("--dry-run", is_flag=True, help="--emergency: print the plan, change nothing")
@click.option(
    "--wait",
    "wait_s",
    type=float,
    default=60.0,
    help="--emergency without a running daemon: seconds to work on it here",
)
@click.pass_context
def rotate(
    ctx: click.Context,
    domain_name: str | None,
    reason: str,
    actor: str | None,
    emergency: bool,
    selector: str,
    customer_name: str,
    policy_name: str,
    everything: bool,
    yes: bool,
    dry_run: bool,
    wait_s: float,
) -> None:
    """Rotate DOMAIN now, or with --emergency take compromised keys out of service."""
    from .service import Scope

    scoped = [bool(domain_name), bool(customer_name), bool(policy_name), everything]
    if not emergency:
        if any(scoped[1:]) or selector or dry_run or yes:
            raise click.ClickException(
                "--selector, --customer, --policy, --all, --yes and --dry-run need --emergency"
            )
        if not domain_name:
            raise click.ClickException("give the DOMAIN to rotate (or --emergency with a scope)")
        app = _app(ctx)
        app.service.request_rotation(domain_name, _actor(actor), reason)
        console.print(f"rotation of {domain_name} requested; the daemon does it on its next tick")
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
    if everything and not yes and not dry_run:
        raise click.ClickException(
            "--all revokes every key the ESP has (standby keys too); add --yes to confirm"
        )
    app = _app(ctx)
    scope = Scope(
        domain=domain_name or "",
        selector=selector.lower(),
        customer=customer_name,
        policy=policy_name,
        everything=everything,
    )
    plan = app.service.emergency_plan(scope)
    table = Table("domain", "selector", "state", "action", title=f"emergency: {scope.describe()}")
    for k in plan.compromise:
        action = "stop signing, wipe key" if k.customer_managed else "stop signing, revoke now"
        table.add_row(k.domain, k.selector, k.state.value, action)
    for k in plan.promote:
        table.add_row(k.domain, k.selector, k.state.value, "switch to this standby key")
    console.print(table)
    if dry_run:
        console.print("dry run: nothing changed")
        return
    started = time.monotonic()
    app.service.emergency(plan, _actor(actor), reason)
    console.print(f"{len(plan.compromise)} keys out of the signer; revoking and replacing")
    _nudge_or_run(app, plan, started + wait_s)


def _nudge_or_run(app: Any, plan: Any, deadline: float) -> None:
    """Wake the daemon (SIGUSR1) for the revocations and replacements; with no daemon
    running, do the work here until it is done or the deadline passes."""
    import signal as sig

    from .daemon import DaemonLock

    lock = DaemonLock(app.config.database)
    try:
        lock.acquire()
    except RotatorError:
        pid = lock.holder()
        if pid:
            os.kill(pid, sig.SIGUSR1)
            console.print(f"daemon (pid {pid}) woken up; follow it with `rotator status`")
        return
    try:
        ids = {k.key_id for k in plan.compromise}
        affected = {k.identity for k in plan.compromise}
        revoked = replaced = False
        while time.monotonic() < deadline:
            app.service.tick()
            revoked = all(
                k.state in (State.REVOKED, State.DESTROYED)
                for k in app.store.list_keys()
                if k.key_id in ids
            )
            # replaced: an active key again, or a notice saying what it waits for
            replaced = all(
                i.active_key or i.notice for i in app.store.identities() if i.identity in affected
            )
            if revoked and replaced:
                break
            time.sleep(0.1)
        console.print(
            f"compromised keys revoked on every nameserver: {revoked}; "
            f"replacements active: {replaced}"
        )
    finally:
        lock.release()


@cli.command()
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
            raise click.ClickException(
                f"--type: unknown event type {t!r}; use one of {', '.join(sorted(EVENT_TYPES))}"
            )
    app = _app(ctx)
    idents: tuple[str, ...] = ()
    if customer_name:
        idents = tuple(i.identity for i in app.store.identities() if i.customer == customer_name)
        if not idents:
            raise click.ClickException(f"--customer: no customer named {customer_name!r}")
    flt = LogFilter(
        identities=idents,
        domain=domain_name.rstrip(".").lower() if domain_name else None,
        selector=selector,
        key_id=key_id,
        types=types,
        actor=actor,
        since=_time_arg(since, "--since"),
        until=_time_arg(until, "--until"),
        limit=limit,
    )
    last = 0
    while True:
        for stored in app.store.events(LogFilter(**{**flt.__dict__, "after_position": last})):
            _print_event(stored, as_json)
            last = stored.position
        if not follow:
            return
        sys.stdout.flush()
        time.sleep(0.5)


def _print_event(stored: StoredEvent, as_json: bool) -> None:
    e = stored.event
    common = {
        "position": stored.position,
        "at": iso(e.at),
        "type": type(e).__name__,
        "domain": getattr(e, "domain", None),
        "selector": getattr(e, "selector", None),
        "key_id": getattr(e, "key_id", None),
        "actor": e.actor,
        "reason": e.reason,
    }
    if as_json:
        click.echo(json.dumps({**common, "payload": e.payload(), "hash": stored.hash}))
        return
    detail = {k: v for k, v in e.payload().items() if k not in ("record", "results", "details")}
    extra = " ".join(f"{k}={v}" for k, v in detail.items() if v not in (None, "", []))
    who = f" by {e.actor}" + (f" ({e.reason})" if e.reason else "")
    click.echo(
        f"{stored.position:>6} {iso(e.at)[:23]} {common['type']:<20} "
        f"{common['domain'] or ''} {common['selector'] or ''}{who} {extra}".rstrip()
    )


@cli.command()
@click.option("--once", is_flag=True, help="Run one tick and exit (for cron or debugging)")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds")
@click.pass_context
def run(ctx: click.Context, once: bool, duration: float | None) -> None:
    """Run the daemon: advance every key whose next action is due, until SIGTERM."""
    from .daemon import Daemon, DaemonLock

    app = _app(ctx)
    if once:
        lock = DaemonLock(app.config.database)
        lock.acquire()
        try:
            app.service.startup()
            report = app.service.tick()
        finally:
            lock.release()
        console.print(
            f"generated {report.generated}, succeeded {report.succeeded}, failed {report.failed}"
        )
        return
    Daemon(app).run(duration=duration)


@cli.group(cls=RotatorGroup)
def db() -> None:
    """Database maintenance."""


@db.command("rebuild")
@click.option("--check", is_flag=True, help="Only compare; change nothing")
@click.pass_context
def db_rebuild(ctx: click.Context, check: bool) -> None:
    """Replay the event log into a fresh projection (and compare it with the live one)."""
    app = _app(ctx)
    diffs = app.store.rebuild(check_only=check)
    for d in diffs:
        click.echo(d)
    if check:
        if diffs:
            raise click.ClickException(f"{len(diffs)} differences between log and projection")
        console.print("projection matches the event log")
    else:
        console.print(f"projection rebuilt from the log ({len(diffs)} differences repaired)")


@cli.group(cls=RotatorGroup)
def audit() -> None:
    """Audit log integrity."""


@audit.command("verify")
@click.pass_context
def audit_verify(ctx: click.Context) -> None:
    """Check the hash chain of the event log; report the first event where it breaks."""
    app = _app(ctx)
    n, problem = app.store.verify_chain()
    if problem:
        raise click.ClickException(f"hash chain broken: {problem}")
    console.print(f"hash chain intact over {n} events")


@cli.command()
@click.option("--seconds", type=float, default=60.0, help="How long to run the daemon")
@click.option(
    "--workdir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to keep the demo's files (default: a new temporary directory)",
)
def demo(seconds: float, workdir: Path | None) -> None:
    """Run the daemon on the demo policy against two local BIND nameservers."""
    from .demo import run_demo

    run_demo(seconds, workdir)


def _time_arg(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_iso(value)
    except ValueError:
        pass
    try:
        return datetime.now(UTC) - parse_duration(value)
    except ValueError:
        raise click.ClickException(
            f"{name}: {value!r} is neither an ISO time (2026-11-24T10:00:00Z) nor a duration"
        ) from None


def _when(value: str | datetime | None, now: datetime | None = None) -> str:
    """'2026-11-24T12:00:00Z (in 3d)' / '(5m ago)' / '(now)'."""
    if value is None:
        return "-"
    dt = parse_iso(value) if isinstance(value, str) else value
    delta = round((dt - (now or utcnow())).total_seconds())
    if delta == 0:
        rel = "now"
    else:
        span = _human(abs(delta))
        rel = f"in {span}" if delta > 0 else f"{span} ago"
    return f"{iso(dt)[:19]}Z ({rel})"


def _human(secs: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs / size:.1f}".removesuffix(".0") + unit
    return f"{secs}s"


def _ago(value: str, now: datetime) -> str:
    return _when(value, now)


def main() -> None:
    cli(prog_name="rotator")


if __name__ == "__main__":
    main()
