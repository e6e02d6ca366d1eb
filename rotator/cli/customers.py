"""`rotator customer ...`: onboarding, bulk import, customer keys, checks of their DNS."""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import track
from rich.table import Table

from ..bootstrap import MAX_PEM, App, CustomerRow, txt_line
from ..domain.model import IdentityState
from ..domain.states import Mode
from .base import RotatorGroup, get_app
from .csvinput import read_customer_csv
from .options import audit_options
from .render import add_row, clean, console, err_console, say, warn

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
    actor: str,
    reason: str,
) -> None:
    """Onboard a customer domain and print exactly what their IT must add to DNS."""
    app = get_app(ctx)
    row = CustomerRow(name, domain_name, mode, policy_name, signing_domain, esp_signature, zone)
    (ident,) = app.onboarding.add_customers([row], actor, reason)
    print_onboarding(app, ident)
    warn_zones(app, [ident])


def warn_zones(app: App, idents: list[IdentityState]) -> None:
    for problem in app.onboarding.zone_problems(idents):
        warn(problem)


def print_onboarding(app: App, ident: IdentityState) -> None:
    text, records = app.onboarding.instructions(ident)
    say(f"{ident.customer}: {ident.mode}, d={ident.domain}, zone {ident.zone}")
    say(text)
    for line in records:
        click.echo(clean(line))


@customer.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@audit_options
@click.pass_context
def customer_import(ctx: click.Context, csv_file: Path, actor: str, reason: str) -> None:
    """Onboard many customers from CSV (columns: customer, domain, mode, policy, and
    optionally signing_domain, esp_signature, zone). Every row is checked before anything is
    added; a bad row names its line and field and adds nothing."""
    rows = read_customer_csv(csv_file)
    app = get_app(ctx)
    added = app.onboarding.add_customers(
        rows,
        actor,
        reason,
        progress=lambda it: track(
            it, description="checking rows", total=len(rows), console=err_console, transient=True
        ),
    )
    for ident in track(added, description="onboarding text", console=err_console, transient=True):
        print_onboarding(app, ident)
    say(f"imported {len(added)} customer domains from {csv_file}")
    warn_zones(app, added)


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
    actor: str,
    reason: str,
) -> None:
    """Take a customer-generated key (customer-key mode): rotator verifies the customer's
    record on every nameserver of their zone, then signs with it."""
    app = get_app(ctx)
    with key_file.open("rb") as fh:  # no more than a key can be: the size is checked next
        pem = fh.read(MAX_PEM + 1)
    key = app.keyimport.import_key(domain_name, selector, pem, actor, reason)
    say(
        f"imported {key.selector} for {key.domain} (fingerprint {key.fingerprint[:16]}); "
        "the customer must publish:"
    )
    click.echo(txt_line(key, key.ttl))
    warn(
        f"{key_file} still holds the customer's private key; rotator keeps its own copy: "
        f"wipe that file (e.g. shred -u {key_file}) and any copy of it"
    )


@customer.command("cancel-import")
@click.argument("domain_name", metavar="DOMAIN")
@audit_options
@click.pass_context
def customer_cancel_import(ctx: click.Context, domain_name: str, actor: str, reason: str) -> None:
    """Give up a customer key still waiting for the customer's DNS (its copy is wiped)."""
    app = get_app(ctx)
    key = app.keyimport.cancel(domain_name, actor, reason)
    say(f"import of {key.selector} for {key.domain} cancelled; rotator's copy is wiped next")


@customer.command("list")
@click.pass_context
def customer_list(ctx: click.Context) -> None:
    app = get_app(ctx, readonly=True)
    table = Table("customer", "mode", "d=", "zone", "signs mail of", "esp signature")
    for i in app.queries.customers():
        add_row(
            table, i.customer, i.mode, i.domain, i.zone, i.signing_pattern, i.esp_identity or "-"
        )
    console.print(table)


@customer.command("check")
@click.argument("name")
@click.pass_context
def customer_check(ctx: click.Context, name: str) -> None:
    """Report which of the customer's required DNS records are present and which missing."""
    app = get_app(ctx, readonly=True)
    idents = app.queries.customer(name)
    missing = 0
    for ident in idents:
        _, records = app.onboarding.instructions(ident)
        problem = app.customer_dns.check(ident)
        state = "missing" if problem else "present"
        if not records:
            say(f"{ident.domain}: nothing required from the customer ({ident.mode})")
            continue
        say(f"{ident.domain}: {ident.mode} records {state}")
        for line in records:
            click.echo(clean(f"  {line}"))
        if problem:
            missing += 1
            say(f"  {problem}")
    if missing:
        raise click.ClickException(f"{missing} of {len(idents)} domains await customer DNS")
