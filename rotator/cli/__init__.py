"""Operator commands, one small module per command group. Every error is one line naming
what is wrong and how to fix it, with a non-zero exit and no change to state."""

from __future__ import annotations

from .audit import audit, db, log
from .base import cli
from .customers import customer
from .identities import domain, esp
from .operations import demo, rotate, run, status
from .setup import init, policy

for command in (init, policy, domain, esp, customer, status, rotate, log, run, db, audit, demo):
    cli.add_command(command)

__all__ = ["cli", "main"]


def main() -> None:
    cli(prog_name="rotator")
