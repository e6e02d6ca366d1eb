"""The documentation's reference parts are printed from the code: a setting, command, API
operation, event type, state, reason code or metric cannot be added undocumented, and the
site builds with --strict (no broken link, no page missing from the navigation)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rotator.docsite.blocks import MAKERS, names_in, stale
from rotator.docsite.cli import commands
from rotator.domain.events import EVENT_TYPES
from rotator.domain.reasons import Reason

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference"


def test_every_generated_block_is_current() -> None:
    assert stale(ROOT) == [], "run: python -m rotator.docsite"


def test_every_reference_is_placed_in_some_page() -> None:
    assert set(MAKERS) <= names_in(ROOT)


def test_every_command_event_reason_and_metric_is_in_the_reference() -> None:
    from rotator.cli import cli

    text = (REFERENCE / "cli.md").read_text()
    assert all(f"### `{path}`" in text for path, _ in commands(cli, "rotator"))
    assert "### `rotator customer add`" in text and "--policy" in text
    events = (REFERENCE / "events.md").read_text()
    assert all(f"| `{name}` |" in events for name in EVENT_TYPES)
    assert all(f"| `{code.value}` |" in events for code in Reason)
    # found here independently of the generator: every metric name the sources spell out
    sources = "".join(p.read_text() for p in (ROOT / "rotator" / "metrics").glob("*.py"))
    names = set(re.findall(r'"(rotator_[a-z_]+)"', sources))
    metrics = (REFERENCE / "metrics.md").read_text()
    assert names and [n for n in sorted(names) if f"`{n}`" not in metrics] == []


@pytest.mark.timeout(180)
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").is_file()
