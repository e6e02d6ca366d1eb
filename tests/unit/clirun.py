"""Running the CLI in-process against a temporary config (no DNS is reached: the primary is
127.0.0.1:1), and what every refusal must look like."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from click.testing import CliRunner, Result

from rotator.cli import cli

ROOT = Path(__file__).resolve().parents[2]
TSIG_SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTAwMzI="  # 32 bytes


def write_config(tmp_path: Path, **dns: str) -> Path:
    secret = dns.get("tsig_secret", TSIG_SECRET)
    cfg = tmp_path / "rotator.toml"
    cfg.write_text(
        f"""
database = "state/rotator.db"
key_dir = "keys"
policy_dir = "{ROOT / "policies"}"
tick_seconds = 1
log_format = "json"

[dns]
primary = "127.0.0.1:1"
tsig_name = "rotator"
tsig_secret = "{secret}"

[signer]
key_table = "opendkim/KeyTable"
signing_table = "opendkim/SigningTable"
"""
    )
    cfg.chmod(0o600)  # it holds the TSIG secret: rotator refuses it readable by others
    return cfg


def db_path(cfg: Path) -> Path:
    return cfg.parent / "state" / "rotator.db"


def event_count(cfg: Path) -> int:
    path = db_path(cfg)
    if not path.exists():
        return 0
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    finally:
        conn.close()


def run(cfg: Path, *args: str) -> Result:
    runner = CliRunner(env={"COLUMNS": "200", "ROTATOR_CONFIG": None})
    return runner.invoke(cli, ["--config", str(cfg), *args])


def ok(cfg: Path, *args: str) -> Result:
    result = run(cfg, *args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def refused(cfg: Path, *args: str) -> str:
    """Run a command that must fail: one line on stderr, exit != 0, no new event."""
    before = event_count(cfg)
    result = run(cfg, *args)
    assert result.exit_code != 0, result.output
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), repr(result.exception)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert event_count(cfg) == before
    return lines[0]


def add(cfg: Path, domain: str = "example.com", *extra: str) -> Result:
    return ok(cfg, "domain", "add", domain, "--policy", "demo", *extra)
