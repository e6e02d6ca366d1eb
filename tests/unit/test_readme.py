"""The README is read in five minutes: what rotator is, the lifecycle, the two quick-start
commands and where to read on, every link of which leads to a page that exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_is_short_and_its_links_lead_somewhere() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    assert "bash deploy/quickstart.sh demo" in text and "bash deploy/quickstart.sh test" in text
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    assert len(links) >= 15
    assert [link for link in links if not (ROOT / link).exists()] == []


def test_the_ci_runs_the_test_command_the_readme_gives() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.rstrip().endswith("bash deploy/quickstart.sh test")
