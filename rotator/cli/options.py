"""Options several commands share, declared once."""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def audit_options(func: F) -> F:
    """--actor and --reason: who did it and why, for the audit log."""
    func = click.option("--reason", default="", help="Why, for the audit log")(func)
    func = click.option(
        "--actor", default=None, help="Operator name for the audit log (default: $USER)"
    )(func)
    return func


def actor_name(value: str | None) -> str:
    if value:
        return value
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"
