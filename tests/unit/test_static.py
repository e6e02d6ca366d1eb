"""The test command also gates style and types: ruff, ruff format, mypy --strict."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_IN_DOMAIN = (
    "dns",
    "sqlite_utils",
    "sqlite3",
    "apscheduler",
    "structlog",
    "rotator.adapters",
)


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_ruff_lint() -> None:
    proc = run("ruff", "check", "rotator", "tests")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format() -> None:
    proc = run("ruff", "format", "--check", "rotator", "tests")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.timeout(600)
def test_mypy_strict() -> None:
    proc = run("mypy", "--strict", "rotator")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_domain_imports_no_io_libraries() -> None:
    for path in sorted((ROOT / "rotator" / "domain").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                root = name.split(".")[0]
                assert root not in FORBIDDEN_IN_DOMAIN and not name.startswith(
                    "rotator.adapters"
                ), f"{path.name} imports {name}: the domain must stay free of I/O"
