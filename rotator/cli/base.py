"""The root command group, the CLI's error boundary, and how commands reach the App."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..bootstrap import DATABASE_ERRORS, App, build, db_hint
from ..config.settings import Config, load_config
from ..domain.errors import RotatorError
from ..logging import configure

DEBUG_ENV = "ROTATOR_DEBUG"  # set to 1 to see the Python stack behind an error line


def one_line(exc: BaseException, ctx: click.Context) -> str | None:
    """The operator's one line for an error, or None for an error that is a bug."""
    if isinstance(exc, RotatorError):
        return str(exc)
    if isinstance(exc, DATABASE_ERRORS):
        obj = ctx.find_root().obj or {}
        config = obj.get("config")
        if config is None:
            return f"database: {db_hint(exc)}"
        return f"database {config.database}: {db_hint(exc, config.database)}"
    if isinstance(exc, OSError):
        name = exc.filename or "a file"
        what = exc.strerror or str(exc)
        hint = ""
        if isinstance(exc, PermissionError):
            hint = "; run rotator as the user that owns it (e.g. `sudo -u rotator rotator ...`)"
        elif isinstance(exc, IsADirectoryError | NotADirectoryError):
            hint = "; give a file where a file is expected"
        elif exc.errno is not None and exc.errno in (30,):  # EROFS
            hint = "; the filesystem is mounted read-only"
        return f"{name}: {what}{hint}"
    return None


# the errors an operator gets as one line (any other is a bug, shown with its stack)
_TOLD: tuple[type[Exception], ...] = (RotatorError, OSError, *DATABASE_ERRORS)


class RotatorGroup(click.Group):
    """The CLI's error boundary: rotator's own errors, OS and database errors become one
    line naming the file and what to do, with a non-zero exit ($ROTATOR_DEBUG=1 shows the
    stack instead)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _TOLD as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            line = one_line(exc, ctx)
            if line is None:  # pragma: no cover - every listed type has a line
                raise
            raise click.ClickException(line) from None


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
    obj = ctx.ensure_object(dict)
    obj.setdefault("config_path", config_path)
    obj.setdefault("log_format", log_format)


def config_of(ctx: click.Context) -> Config:
    obj = ctx.find_root().obj
    if "config" not in obj:
        obj["config"] = load_config(obj.get("config_path"))
    config: Config = obj["config"]
    return config


def get_app(ctx: click.Context, readonly: bool = False, daemon: bool = False) -> App:
    """The App, built once per invocation from the config; tests may pass obj={"app": ...}
    (or {"factory": ...}) to the invocation instead. A `readonly` App opens the database
    read-only, loads no TSIG secret and writes nothing."""
    obj = ctx.find_root().obj
    if "app" not in obj:
        config = config_of(ctx)
        configure(obj.get("log_format") or config.log_format)
        obj["app"] = obj.get("factory", build)(config, readonly=readonly, command=not daemon)
    app: App = obj["app"]
    return app
