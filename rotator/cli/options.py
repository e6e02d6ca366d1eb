"""Options several commands share, declared once."""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..domain.errors import RotatorError
from ..domain.names import printable

F = TypeVar("F", bound=Callable[..., Any])


def audit_options(func: F) -> F:
    """--actor and --reason: who did it and why, for the audit log (checked, resolved)."""
    func = click.option(
        "--reason",
        default="",
        callback=lambda _ctx, _param, value: _checked(reason_text, value),
        help="Why, for the audit log",
    )(func)
    func = click.option(
        "--actor",
        default=None,
        callback=lambda _ctx, _param, value: _checked(actor_name, value),
        help="Operator name for the audit log (default: the login name)",
    )(func)
    return func


def removal_options(func: F) -> F:
    """--now, --dry-run, --yes and the audit options of `domain remove` and `customer remove`."""
    func = audit_options(func)
    func = click.option("--yes", is_flag=True, help="Confirm a removal above the safety limit")(
        func
    )
    func = click.option("--dry-run", is_flag=True, help="Print what would happen, change nothing")(
        func
    )
    return click.option("--now", is_flag=True, help="Revoke at once, without the drain window")(
        func
    )


def _checked(check: Callable[[Any], str], value: Any) -> str:
    try:
        return check(value)
    except RotatorError as exc:
        raise click.ClickException(str(exc)) from None  # one line, no usage text


def actor_name(value: str | None) -> str:
    """--actor as given (checked: it goes into the audit log), else the login name."""
    if value:
        return printable("--actor", value.strip(), 100)
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def reason_text(value: str) -> str:
    return printable("--reason", value, 1000)
