"""`rotator init` and `rotator policy check`."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from ..config.policies import PolicySet, load_policy_file
from ..domain.errors import ConfigError, PublishError
from ..domain.policy import format_duration
from .base import RotatorGroup, config_of, get_app
from .render import add_row, console, say


@click.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Check the config and policies, create the database and key directory."""
    app = get_app(ctx)
    cfg = app.config
    say(f"config      {cfg.path}")
    say(f"database    {cfg.database} ({app.store.info()['events']} events)")
    say(f"key_dir     {cfg.key_dir} (mode 0700)")
    sealed = app.keys_summary()
    if sealed is not None:
        say(f"keys        {sealed}; key_dir is this node's copy")
    say(f"audit key   {cfg.audit.key_file} (0400; back it up apart from the database)")
    say(f"anchor      {cfg.audit.anchor} (make it append-only: chattr +a)")
    say(f"policies    {', '.join(app.policies.names()) or 'none'} in {cfg.policy_dir}")
    dns = cfg.dns
    if dns.primary is not None:
        say(f"dns primary {dns.primary}:{dns.primary_port} (TSIG {dns.tsig_name})")
    for backend in dns.backends:
        say(f"dns backend {backend.name} ({backend.kind}) for {', '.join(backend.zones)}")
    # every zone a backend is given must be one it serves: say so now, not at the first key
    for zone in [z for b in dns.backends for z in b.zones]:
        try:
            problem = app.ctx.publisher.zone_problem(zone)
        except PublishError as exc:  # not answering is no better here
            problem = exc.reason
        if problem is not None:
            raise ConfigError(f"{cfg.path}: dns.backends: {problem}")


@click.group(cls=RotatorGroup)
def policy() -> None:
    """Policies (policies/*.toml)."""


@policy.command("check")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.pass_context
def policy_check(ctx: click.Context, files: tuple[Path, ...]) -> None:
    """Validate policy files (default: every policy in policy_dir) and show their windows."""
    if files:
        pols = [load_policy_file(f) for f in files]
    else:
        pols = list(PolicySet(config_of(ctx).policy_dir).policies.values())
    table = Table("policy", "key", "rotation", "drain window", "ttl", "selector", "tombstone")
    for p in pols:
        add_row(
            table,
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
