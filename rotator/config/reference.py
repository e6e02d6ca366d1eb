"""The reference tables of the README, printed from the configuration models: a setting's
row is its field's default and meaning, so a setting cannot be added undocumented.

    python -m rotator.config.reference              # the three tables, between their markers
    python -m rotator.config.reference --write README.md
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from ..domain.durations import format_duration
from ..domain.policy_file import PolicyFile
from .backends import KINDS, BackendSettings
from .settings import RotatorToml
from .targets import TargetSettings

BLOCK = re.compile(r"<!-- generated: (?P<name>[^ ]+) -->\n.*?<!-- end -->", re.DOTALL)


def shown(field: FieldInfo) -> str:
    """How the table writes a default: as the field says, or the value as TOML writes it."""
    extra = field.json_schema_extra
    if isinstance(extra, dict) and "shown" in extra:
        return str(extra["shown"])
    value = field.default
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    if isinstance(value, timedelta):
        return f"`{format_duration(value)}`"
    if isinstance(value, tuple):
        return f"`{json.dumps(list(value))}`"
    return f"`{value}`"


def rows(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    """(dotted key, field) of every setting; a table's settings under its name."""
    for name, field in model.model_fields.items():
        inner = field.annotation
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            yield from rows(inner, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", field


def table(header: str, items: Iterator[tuple[str, FieldInfo]]) -> str:
    lines = [f"| {header} | default | meaning |", "|---|---|---|"]
    lines += [f"| {key} | {shown(f)} | {f.description} |" for key, f in items]
    return "\n".join(lines)


def rotator_toml() -> str:
    settings = ((k, f) for k, f in rows(RotatorToml) if k != "targets")
    return table("key", ((f"`{k}`", f) for k, f in settings))


def targets() -> str:
    return table("key", ((f"`{k}`", f) for k, f in rows(TargetSettings)))


def policies() -> str:
    def key(dotted: str) -> str:
        section, _, name = dotted.rpartition(".")
        return f"`[{section}] {name}`" if section else f"`{name}`"

    return table("setting", ((key(k), f) for k, f in rows(PolicyFile)))


def backends() -> str:
    """The settings every [[dns.backends]] entry has, then each kind's own."""
    common = set(BackendSettings.model_fields)
    items = [(f"`{k}`", f) for k, f in BackendSettings.model_fields.items()]
    for kind, model in sorted(KINDS.items()):
        items += [(f"`{k}` ({kind})", f) for k, f in model.model_fields.items() if k not in common]
    return table("key", iter(items))


TABLES = {
    "rotator.toml": rotator_toml,
    "dns-backends": backends,
    "targets": targets,
    "policies": policies,
}


def blocks() -> dict[str, str]:
    """Each table between its markers, as the README holds it."""
    return {
        name: f"<!-- generated: {name} -->\n{make()}\n<!-- end -->" for name, make in TABLES.items()
    }


def update(text: str) -> str:
    """`text` with every generated block replaced by the table printed now."""
    made = blocks()
    return BLOCK.sub(lambda m: made[m["name"]], text)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--write"] and len(argv) == 2:
        path = Path(argv[1])
        path.write_text(update(path.read_text()))
        return 0
    if argv:
        print("usage: python -m rotator.config.reference [--write README.md]", file=sys.stderr)
        return 2
    print("\n\n".join(blocks().values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
