"""`rotator keys ...`: the key-encryption key of keys sealed in a database."""

from __future__ import annotations

from pathlib import Path

import click

from ..bootstrap import make_kek, rewrap_keys
from ..domain.errors import StoreError
from .base import RotatorGroup, config_of
from .render import say


@click.group(cls=RotatorGroup)
def keys() -> None:
    """The KEK of private keys sealed in a database (keys.store = "database")."""


@keys.command("kek-create")
@click.argument("file", type=click.Path(path_type=Path))
def kek_create(file: Path) -> None:
    """Write a new key-encryption key to FILE: 32 random octets in base64, mode 0400.

    FILE must not exist. Give the same KEK to every node (keys.kek_file, or the systemd
    credential keys.kek), and keep a copy apart from the database's backups: without it the
    sealed keys cannot be read."""
    kek = make_kek(file)
    say(f"KEK {kek} written to {file} (mode 0400)")


@keys.command("rewrap")
@click.option(
    "--kek",
    "new_kek",
    required=True,
    type=click.Path(path_type=Path),
    help="The new KEK's file (from `rotator keys kek-create`)",
)
@click.pass_context
def rewrap(ctx: click.Context, new_kek: Path) -> None:
    """Wrap every sealed key's data key with a new KEK.

    Opens each row with keys.kek_file (or keys.previous_kek_file) and writes its data key
    back wrapped by the new KEK; the encrypted keys themselves are not touched. Once every
    node uses the new KEK, destroying the old one leaves every copy of the old rows (WAL,
    dead tuples, backups) undecryptable (see docs/keys-in-database.md)."""
    done = rewrap_keys(config_of(ctx), new_kek)
    say(f"KEK {done.kek}: {done.rewrapped} re-wrapped, {done.already} already wrapped by it")
    if done.left:
        raise StoreError(
            f"{len(done.left)} keys were sealed meanwhile under another KEK (a node still on "
            f"the old one): give every node KEK {done.kek}, then run this again"
        )
