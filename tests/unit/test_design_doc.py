"""The design page (docs/design.md) against the tree: every package and top-level module of
rotator is named there, and every path named there exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "rotator"


def named_paths() -> list[str]:
    """The paths the section's code block begins its lines with; an indented line goes on
    with the description of the path above it."""
    section = (ROOT / "docs" / "design.md").read_text()
    block = re.search(r"^```[^\n]*\n(.*?)^```", section, re.S | re.M)
    assert block is not None, "the section has no code block"
    lines = block.group(1).splitlines()
    return [line.split()[0] for line in lines if line and not line[0].isspace()]


def exists(name: str) -> bool:
    # `dir/` is a package (a directory under tests/), `x.py` a module; a bare name may be
    # either, for what is one or the other as it grows
    path = ROOT / name.rstrip("/")
    if not name.startswith("rotator/"):
        return name.endswith("/") and path.is_dir()
    if name.endswith("/"):
        return (path / "__init__.py").is_file()
    if name.endswith(".py"):
        return path.is_file()
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_every_path_named_exists() -> None:
    names = named_paths()
    assert names, "the block names nothing"
    assert len(names) == len(set(names)), "a path is named twice"
    assert [n for n in names if not exists(n)] == []


def test_every_package_and_top_level_module_is_named() -> None:
    named = {n.rstrip("/").removesuffix(".py") for n in named_paths()}
    packages = {
        str(init.parent.relative_to(ROOT))
        for init in PACKAGE.rglob("__init__.py")
        if init.parent != PACKAGE
    }
    modules = {
        str(py.relative_to(ROOT).with_suffix(""))
        for py in PACKAGE.glob("*.py")
        if py.name != "__init__.py"
    }
    assert sorted(packages - named) == []
    assert sorted(modules - named) == []
