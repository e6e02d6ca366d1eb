"""Operator commands, one small module per command group. Every error is one line naming
what is wrong and how to fix it, with a non-zero exit and no change to state."""

from __future__ import annotations

import os

from ..process import harden_process
from .audit import audit, db, log
from .base import cli
from .changes import safety  # also adds remove/set-* to the domain and customer groups
from .customers import customer
from .identities import domain, esp
from .keys import keys
from .operations import demo, resume, rotate, run, status
from .setup import init, policy
from .tokens import token
from .webhooks import webhook

for command in (
    init,
    policy,
    domain,
    esp,
    customer,
    status,
    rotate,
    resume,
    log,
    run,
    db,
    audit,
    demo,
    safety,
    token,
    webhook,
    keys,
):
    cli.add_command(command)

__all__ = ["cli", "main"]


def main() -> None:
    # whatever a command creates (database, WAL, keys, anchor) is its user's alone
    os.umask(0o077)
    harden_process()  # no core dumps, no ptrace: commands handle private keys too
    cli(prog_name="rotator")
