"""`rotator customer ...`: onboarding, bulk import, customer keys, checks of their DNS."""

from __future__ import annotations

import csv
from pathlib import Path

import click
from rich.progress import track
from rich.table import Table

from ..app import CustomerRow
from ..app.customer_dns import txt_line
from ..app.onboarding import CSV_COLUMNS, CSV_REQUIRED
from ..bootstrap import App
from ..domain.model import IdentityState
from ..domain.states import Mode
from .base import RotatorGroup, get_app
from .options import actor_name, audit_options
from .render import console, err_console

MODES = [m.value for m in Mode]


@click.group(cls=RotatorGroup)
def customer() -> None:
    """Customers: onboarding, bulk import, checks of their DNS."""


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
@audit_options
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
    app = get_app(ctx)
    row = CustomerRow(name, domain_name, mode, policy_name, signing_domain, esp_signature, zone)
    (ident,) = app.onboarding.add_customers([row], actor_name(actor), reason)
    print_onboarding(app, ident)


def print_onboarding(app: App, ident: IdentityState) -> None:
    text, records = app.onboarding.instructions(ident)
    console.print(f"[bold]{ident.customer}[/]: {ident.mode}, d={ident.domain}, zone {ident.zone}")
    console.print(text)
    for line in records:
        click.echo(line)


@customer.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@audit_options
@click.pass_context
def customer_import(ctx: click.Context, csv_file: Path, actor: str | None, reason: str) -> None:
    """Onboard many customers from CSV (columns: customer, domain, mode, policy, and
    optionally signing_domain, esp_signature, zone). Every row is checked before anything is
    added; a bad row names its line and field and adds nothing."""
    app = get_app(ctx)
    with csv_file.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = set(CSV_REQUIRED) - set(reader.fieldnames or [])
        if missing:
            raise click.ClickException(
                f"{csv_file}: header lacks {', '.join(sorted(missing))}; expected "
                f"{','.join(CSV_REQUIRED)}[,{','.join(CSV_COLUMNS[len(CSV_REQUIRED) :])}]"
            )
        rows = [
            CustomerRow(
                **{c: r.get(c) or "" for c in CSV_COLUMNS},
                where=f"{csv_file.name} line {reader.line_num}",
            )
            for r in reader
        ]
    if not rows:
        raise click.ClickException(f"{csv_file}: no customer rows")
    added = app.onboarding.add_customers(
        rows,
        actor_name(actor),
        reason,
        progress=lambda it: track(
            it, description="checking rows", total=len(rows), console=err_console, transient=True
        ),
    )
    for ident in track(added, description="onboarding text", console=err_console, transient=True):
        print_onboarding(app, ident)
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
@audit_options
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
    app = get_app(ctx)
    key = app.onboarding.import_key(
        domain_name, selector, key_file.read_bytes(), actor_name(actor), reason
    )
    console.print(
        f"imported {key.selector} for {key.domain} (fingerprint {key.fingerprint[:16]}); "
        "the customer must publish:"
    )
    click.echo(txt_line(key, 3600))


@customer.command("list")
@click.pass_context
def customer_list(ctx: click.Context) -> None:
    app = get_app(ctx)
    table = Table("customer", "mode", "d=", "zone", "signs mail of", "esp signature")
    for i in app.queries.customers():
        table.add_row(
            i.customer, i.mode, i.domain, i.zone, i.signing_pattern, i.esp_identity or "-"
        )
    console.print(table)


@customer.command("check")
@click.argument("name")
@click.pass_context
def customer_check(ctx: click.Context, name: str) -> None:
    """Report which of the customer's required DNS records are present and which missing."""
    app = get_app(ctx)
    idents = app.queries.customer(name)
    missing = 0
    for ident in idents:
        _, records = app.onboarding.instructions(ident)
        problem = app.customer_dns.check(ident)
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
