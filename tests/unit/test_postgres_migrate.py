"""`rotator db migrate --to postgresql://...`: an SQLite installation's log copied into an
empty PostgreSQL database with every position, hash and MAC kept, the projection rebuilt
there, the same audit head and the same anchor holding for it; a database that is not
empty, a running daemon and a log that cannot be checked are refused in one line. Runs
against the tests' private PostgreSQL (tests/support/postgres.py)."""

from __future__ import annotations

import fcntl
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from rotator.adapters.store.anchor import Anchor
from rotator.adapters.store.postgres.store import PostgresEventStore
from rotator.adapters.store.seal import Sealer, load_key
from rotator.adapters.store.sqlite import SqliteEventStore
from rotator.cli import cli
from tests.bench.bench_tick import fill

from .clirun import db_path, write_config


def rotator(cfg: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(cfg), *args], obj={})


def filled(tmp_path: Path) -> Path:
    """A sealed and anchored SQLite installation: 200 identities with an active key."""
    cfg = write_config(tmp_path)
    assert rotator(cfg, "init").exit_code == 0
    sealer = Sealer(load_key(tmp_path / "state" / "audit.key", create=False))
    store = SqliteEventStore(db_path(cfg), sealer=sealer, anchor=Anchor(anchor_of(cfg)))
    fill(store, 200, 3)
    store.close()
    assert rotator(cfg, "domain", "add", "late.example", "--policy", "demo").exit_code == 0
    return cfg


def anchor_of(cfg: Path) -> Path:
    return cfg.parent / "state" / "anchor.log"


def on_postgres(cfg: Path, url: str) -> Path:
    """The same config with the PostgreSQL database, its files where they were."""
    text = cfg.read_text().replace('database = "state/rotator.db"', f'database = "{url}"')
    moved = cfg.with_name("rotator-pg.toml")
    moved.write_text(f'state_dir = "state"\n{text}')
    moved.chmod(0o600)
    return moved


def test_the_log_moves_as_it_is(tmp_path: Path, postgres_url: str) -> None:
    cfg = filled(tmp_path)
    head = rotator(cfg, "audit", "head").output.strip()
    (tmp_path / "state" / "rotator.db.webhooks").mkdir()
    done = rotator(cfg, "db", "migrate", "--to", postgres_url)
    assert done.exit_code == 0, done.output
    assert "copied 1001 events (1001 sealed)" in done.output
    assert "200 keys, 201 identities" in done.output
    assert f"audit head {head}, the same as before" in done.output
    state = tmp_path / "state"
    assert f"rename {state / 'rotator.db.webhooks'} to {state / 'rotator.webhooks'}" in done.output

    pg = on_postgres(cfg, postgres_url)
    assert rotator(pg, "audit", "head").output.strip() == head
    verified = rotator(pg, "audit", "verify")
    assert verified.exit_code == 0, verified.output
    assert "hash chain intact over 1001 events" in verified.output
    assert "1001 sealed events" in verified.output
    assert f"the log agrees with every line of the anchor {anchor_of(cfg)}" in verified.output
    assert rotator(pg, "db", "rebuild", "--check").exit_code == 0
    # event for event the same rows, and the same projection
    sealer = Sealer(load_key(state / "audit.key", create=False))
    old = SqliteEventStore(db_path(cfg), readonly=True, sealer=sealer)
    new = PostgresEventStore(postgres_url, readonly=True, sealer=sealer)
    try:
        assert list(new.events()) == list(old.events())
        assert new.list_keys() == old.list_keys()
        assert new.identities() == old.identities()
    finally:
        old.close()
        new.close()
    # and the log goes on there: the next event chains to the last one copied
    assert rotator(pg, "domain", "add", "next.example", "--policy", "demo").exit_code == 0
    assert rotator(pg, "audit", "verify").exit_code == 0
    assert Anchor(anchor_of(cfg)).last() is not None
    assert rotator(pg, "audit", "head").output.startswith("1002 ")


def test_a_database_that_is_not_empty_is_refused(tmp_path: Path, postgres_url: str) -> None:
    cfg = filled(tmp_path)
    assert rotator(cfg, "db", "migrate", "--to", postgres_url).exit_code == 0
    again = rotator(cfg, "db", "migrate", "--to", postgres_url)
    assert again.exit_code == 1
    line = again.output.strip()
    assert re.fullmatch(
        r"Error: database postgresql://\S+ already holds 1001 events: migrate only into an "
        r"empty database",
        line,
    ), line


def test_a_running_daemon_and_a_wrong_target_are_refused(tmp_path: Path, postgres_url: str) -> None:
    cfg = filled(tmp_path)
    wrong = rotator(cfg, "db", "migrate", "--to", "/tmp/other.db")
    assert "is not a postgresql:// URL" in wrong.output and wrong.exit_code == 1
    with open(db_path(cfg).with_name("rotator.db.lock"), "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4242\n")
        held.flush()
        busy = rotator(cfg, "db", "migrate", "--to", postgres_url)
    assert busy.exit_code == 1
    assert "another rotator daemon (pid 4242) is already running" in busy.output
    pg = PostgresEventStore(postgres_url)
    try:
        assert pg.info()["events"] == 0  # nothing was copied
    finally:
        pg.close()


def test_a_log_whose_anchor_disagrees_is_not_moved(tmp_path: Path, postgres_url: str) -> None:
    cfg = filled(tmp_path)
    with anchor_of(cfg).open("a") as fh:  # a line the log does not hold
        fh.write(f"99999 {'ab' * 32}\n")
    done = rotator(cfg, "db", "migrate", "--to", postgres_url)
    assert done.exit_code == 1
    assert "refusing to migrate" in done.output
    assert "(event 99999) carries no MAC after keyed lines: forged" in done.output
    pg = PostgresEventStore(postgres_url, readonly=True)
    try:
        assert pg.info()["events"] == 0  # nothing copied
    finally:
        pg.close()


@pytest.mark.parametrize("target", ["postgresql://nobody@/x?host=/nonexistent"])
def test_a_server_that_cannot_be_reached_is_one_line(tmp_path: Path, target: str) -> None:
    cfg = filled(tmp_path)
    done = rotator(cfg, "db", "migrate", "--to", target)
    assert done.exit_code == 1
    assert done.output.startswith("Error: cannot open database postgresql://nobody@/x")
    assert "check that PostgreSQL runs" in done.output
    assert len(done.output.strip().splitlines()) == 1
