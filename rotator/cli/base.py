"""The root command group, the CLI's error boundary, and how commands reach the App."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..bootstrap import App, build
from ..config import Config, load_config
from ..domain.errors import RotatorError
from ..logging import configure


class RotatorGroup(click.Group):
    """Every command's errors become one line and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RotatorError as exc:
            raise click.ClickException(str(exc)) from None


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


def get_app(ctx: click.Context) -> App:
    """The App, built once per invocation from the config; tests may pass obj={"app": ...}
    (or {"factory": ...}) to the invocation instead."""
    obj = ctx.find_root().obj
    if "app" not in obj:
        config = config_of(ctx)
        configure(obj.get("log_format") or config.log_format)
        obj["app"] = obj.get("factory", build)(config)
    app: App = obj["app"]
    return app
