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
    proc = run("mypy", "--strict", "rotator", "tests")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_domain_imports_no_io_libraries() -> None:
    for path in sorted((ROOT / "rotator" / "domain").rglob("*.py")):
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


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, module: str) -> set[str]:
    """Every rotator module `path` imports (any level, relative imports resolved)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in out if m == "rotator" or m.startswith("rotator.")}


def test_no_import_cycles_in_the_product() -> None:
    files = {_module_name(p): p for p in (ROOT / "rotator").rglob("*.py")}
    graph = {m: {i for i in _imports(p, m) if i in files and i != m} for m, p in files.items()}
    # a package's __init__ re-exporting its modules is not a cycle with them
    graph = {
        m: {i for i in deps if not (m.startswith(i + ".") and i != "rotator")}
        for m, deps in graph.items()
    }
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for dep in sorted(graph[m]):
            if state.get(dep) == 1:
                cycle = [*stack[stack.index(dep) :], dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_product_modules_stay_small() -> None:
    # a module past ~400 lines holds two ideas: split it
    big = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "rotator").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 420
    }
    assert big == {}
