"""Every CLI command, its usage, help and options, from the click command tree."""

from __future__ import annotations

from collections.abc import Iterator

import click

from ..cli import cli


def commands(group: click.Group, prefix: str) -> Iterator[tuple[str, click.Command]]:
    ctx = click.Context(group, info_name=prefix)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        path = f"{prefix} {name}"
        yield path, command
        if isinstance(command, click.Group):
            yield from commands(command, path)


def _params(command: click.Command, ctx: click.Context) -> list[str]:
    lines = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None or record[0] == "--help":
            continue
        opts, text = (part.replace("|", "\\|") for part in record)
        lines.append(f"| `{opts}` | {text} |")
    return ["| option | meaning |", "|---|---|", *lines] if lines else []


def cli_reference() -> str:
    out: list[str] = []
    for path, command in commands(cli, "rotator"):
        ctx = click.Context(command, info_name=path)
        pieces = command.collect_usage_pieces(ctx)
        out += [f"### `{path}`", "", f"`{path} {' '.join(pieces)}`".replace(" `", "`"), ""]
        out += [(command.help or command.short_help or "").strip(), ""]
        table = _params(command, ctx)
        if table:
            out += [*table, ""]
    return "\n".join(out).rstrip()
