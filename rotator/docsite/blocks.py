"""Every generated block by name, and the rewriting of the files that hold them."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from ..config.reference import TABLES
from .cli import cli_reference
from .events import event_reference, reason_reference, state_reference
from .metrics import metric_reference
from .openapi import api_reference

BLOCK = re.compile(r"<!-- generated: (?P<name>[^ ]+) -->\n.*?<!-- end -->", re.DOTALL)

MAKERS: dict[str, Callable[[], str]] = {
    **TABLES,
    "cli": cli_reference,
    "events": event_reference,
    "states": state_reference,
    "reasons": reason_reference,
    "metrics": metric_reference,
    "api": api_reference,
}


def update(text: str, made: dict[str, str]) -> str:
    """`text` with every generated block replaced by the one printed now."""

    def one(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in MAKERS:
            raise KeyError(f"unknown generated block {name!r}; known: {', '.join(MAKERS)}")
        if name not in made:
            made[name] = MAKERS[name]()
        return f"<!-- generated: {name} -->\n{made[name]}\n<!-- end -->"

    return BLOCK.sub(one, text)


def documents(root: Path) -> list[Path]:
    """The Markdown files that may hold generated blocks."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def stale(root: Path) -> list[Path]:
    made: dict[str, str] = {}
    return [
        p for p in documents(root) if p.exists() and update(p.read_text(), made) != p.read_text()
    ]


def write(root: Path) -> list[Path]:
    made: dict[str, str] = {}
    changed = []
    for path in documents(root):
        if not path.exists():
            continue
        text = path.read_text()
        new = update(text, made)
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


def names_in(root: Path) -> set[str]:
    """The blocks the files hold, to check that every one is placed somewhere."""
    return {m["name"] for p in documents(root) if p.exists() for m in BLOCK.finditer(p.read_text())}
