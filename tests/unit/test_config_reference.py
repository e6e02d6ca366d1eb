"""The reference tables of the docs are printed from the configuration models: every setting
rotator.toml, a DNS backend, a signer target or a policy takes has its row, with its default
and meaning, and the pages hold exactly what the models print."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from rotator.config.backends import KINDS, BackendSettings
from rotator.config.reference import BLOCK, blocks, main, rows, update
from rotator.config.settings import RotatorToml
from rotator.config.targets import TargetSettings
from rotator.domain.policy_file import PolicyFile

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = {
    "rotator.toml": DOCS / "reference" / "configuration.md",
    "dns-backends": DOCS / "dns" / "index.md",
    "targets": DOCS / "signers" / "index.md",
    "policies": DOCS / "reference" / "policies.md",
}


def settings(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every leaf setting of a model, found independently of the generator's walk."""
    out: set[str] = set()
    for name, field in model.model_fields.items():
        inner = field.annotation
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            out |= settings(inner, f"{prefix}{name}.")
        elif name != "targets":  # a table of its own
            out.add(f"{prefix}{name}")
    return out


def test_the_docs_hold_the_tables_the_models_print() -> None:
    for name, page in PAGES.items():
        text = page.read_text()
        assert [m["name"] for m in BLOCK.finditer(text)] == [name]
        assert update(text) == text, "run: python -m rotator.docsite"
    assert set(PAGES) == set(blocks())


def test_every_setting_has_a_documented_row_in_the_docs() -> None:
    text = "".join(page.read_text() for page in PAGES.values())
    wanted = {
        "rotator.toml": {f"`{k}`" for k in settings(RotatorToml)},
        "targets": {f"`{k}`" for k in settings(TargetSettings)},
        "dns-backends": {f"`{k}`" for k in BackendSettings.model_fields}
        | {
            f"`{k}` ({kind})"
            for kind, model in KINDS.items()
            for k in model.model_fields
            if k not in BackendSettings.model_fields
        },
        "policies": {
            f"`[{k.rpartition('.')[0]}] {k.rpartition('.')[2]}`" if "." in k else f"`{k}`"
            for k in settings(PolicyFile)
        },
    }
    for match in BLOCK.finditer(text):
        cells = [line.split(" | ") for line in match[0].splitlines() if line.startswith("| `")]
        documented = {c[0].removeprefix("| ") for c in cells if c[2].strip(" |")}
        assert wanted[match["name"]] <= documented, wanted[match["name"]] - documented
    models: list[type[BaseModel]] = [RotatorToml, TargetSettings, PolicyFile, *KINDS.values()]
    for model in models:
        assert all(f.description for _, f in rows(model)), model.__name__


def test_the_settings_the_readme_used_to_omit_are_documented() -> None:
    text = PAGES["policies"].read_text()
    for row in ("[key] companion", "[key] pool", "[retry] park_after", "[standby] enabled"):
        assert f"| `{row}` |" in text
    assert "| `[watch] interval` |" in text


def test_write_rewrites_a_stale_block(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- generated: policies -->\n| stale |\n<!-- end -->\nafter\n")
    assert main(["--write", str(readme)]) == 0
    text = readme.read_text()
    assert "| stale |" not in text and "| `[standby] enabled` | `false` |" in text
    assert text.startswith("intro\n") and text.endswith("<!-- end -->\nafter\n")
