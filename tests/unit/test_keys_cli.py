"""[keys] store = "database" from the config down: its settings and their refusals, the KEK
commands (`rotator keys kek-create`, `rotator keys rewrap`), and a daemon pass that seals
the key it generates (an SQLite key database here; PostgreSQL in tests/integration)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from rotator.adapters.keys.envelope import Envelope, create_kek, read_kek
from rotator.config.settings import load_config

from .clirun import add, ok, refused, write_config


def sealed_config(tmp_path: Path, keys: str | None = None) -> Path:
    cfg = write_config(tmp_path)
    if keys is None:
        keys = 'store = "database"\ndatabase = "state/sealed-keys.db"\nkek_file = "keys.kek"\n'
    cfg.write_text(cfg.read_text() + "\n[keys]\n" + keys)
    return cfg


def rows(tmp_path: Path) -> dict[str, bytes]:
    conn = sqlite3.connect(tmp_path / "state" / "sealed-keys.db")
    try:
        return {str(k): bytes(b) for k, b in conn.execute("SELECT key_id, blob FROM sealed_keys")}
    finally:
        conn.close()


def test_the_default_is_the_key_directory(cfg: Path) -> None:
    config = load_config(cfg)
    assert config.keys.store == "files" and not config.keys.sealed


@pytest.mark.parametrize(
    "keys,problem",
    [
        ('store = "vault"\n', "keys.store: 'vault': use \"files\""),
        ('store = "database"\nkek_file = "k"\n', 'keys.database: store = "database" needs'),
        ('store = "database"\ndatabase = "mysql://x/y"\n', "keys.database: not a database"),
        ('store = "database"\ndatabase = "x.db"\n', 'keys.kek_file: store = "database" needs'),
        ('kek = "k"\n', "keys.kek: unknown key; use store, database, kek_file"),
        ('kek_file = "k"\n', 'keys.store: is "files": kek_file would go unused'),
    ],
)
def test_bad_keys_settings_are_one_line(tmp_path: Path, keys: str, problem: str) -> None:
    cfg = sealed_config(tmp_path, keys)
    assert problem in refused(cfg, "init")


def test_the_kek_is_found_as_a_systemd_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    create_kek(creds / "keys.kek")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    cfg = sealed_config(tmp_path, 'store = "database"\ndatabase = "postgresql:///rotator"\n')
    config = load_config(cfg)
    assert config.keys.kek_file == creds / "keys.kek"
    assert config.keys.database == "postgresql:///rotator"


def test_init_checks_the_key_database_and_names_the_kek(tmp_path: Path) -> None:
    cfg = sealed_config(tmp_path)
    kek = create_kek(tmp_path / "keys.kek")
    out = ok(cfg, "init").stdout
    assert (
        f"keys        sealed in {tmp_path}/state/sealed-keys.db under KEK {kek.id} (0 keys)" in out
    )


def test_kek_create_writes_a_kek_once(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    out = ok(cfg, "keys", "kek-create", str(tmp_path / "keys.kek")).stdout
    kek = read_kek(tmp_path / "keys.kek")
    assert f"KEK {kek.id} written" in out
    assert (tmp_path / "keys.kek").stat().st_mode & 0o777 == 0o400
    line = refused(cfg, "keys", "kek-create", str(tmp_path / "keys.kek"))
    assert "exists: a KEK is never overwritten" in line


def test_a_daemon_pass_seals_the_key_it_generates(tmp_path: Path) -> None:
    cfg = sealed_config(tmp_path)
    ok(cfg, "keys", "kek-create", str(tmp_path / "keys.kek"))
    add(cfg, "example.com")
    ok(cfg, "run", "--once")  # generates the key (the UPDATE then fails: no DNS here)
    (key_id,) = rows(tmp_path)
    pem = Envelope(read_kek(tmp_path / "keys.kek")).open(key_id, rows(tmp_path)[key_id])
    assert pem == (tmp_path / "keys" / f"{key_id}.pem").read_bytes()


def test_rewrap_moves_every_key_to_the_new_kek(tmp_path: Path) -> None:
    cfg = sealed_config(tmp_path)
    ok(cfg, "keys", "kek-create", str(tmp_path / "keys.kek"))
    add(cfg, "example.com")
    add(cfg, "example.org")
    ok(cfg, "run", "--once")
    ok(cfg, "keys", "kek-create", str(tmp_path / "new.kek"))
    old, new = read_kek(tmp_path / "keys.kek"), read_kek(tmp_path / "new.kek")
    out = ok(cfg, "keys", "rewrap", "--kek", str(tmp_path / "new.kek")).stdout
    assert f"KEK {new.id}: 2 re-wrapped, 0 already wrapped by it" in out
    for key_id, blob in rows(tmp_path).items():
        assert Envelope(new).open(key_id, blob).startswith(b"-----BEGIN PRIVATE KEY-----")
        with pytest.raises(Exception, match="wrapped by KEK"):
            Envelope(old).open(key_id, blob)
    # the old KEK no longer opens them: a node still on it is told so, in one line
    line = refused(cfg, "keys", "rewrap", "--kek", str(tmp_path / "keys.kek"))
    assert f"is wrapped by KEK {new.id}, and this node has KEK {old.id}" in line
    # the KEK changed in the config (the old one still opening, as the docs go)
    text = cfg.read_text().replace('kek_file = "keys.kek"', 'kek_file = "new.kek"')
    cfg.write_text(text + 'previous_kek_file = "keys.kek"\n')
    again = ok(cfg, "keys", "rewrap", "--kek", str(tmp_path / "new.kek")).stdout
    assert "0 re-wrapped, 2 already wrapped by it" in again


def test_rewrap_with_keys_in_the_directory_is_refused(cfg: Path, tmp_path: Path) -> None:
    ok(cfg, "keys", "kek-create", str(tmp_path / "new.kek"))
    assert 'keys.store is "files"' in refused(
        cfg, "keys", "rewrap", "--kek", str(tmp_path / "new.kek")
    )


def test_a_writing_command_refuses_a_kek_others_can_read(tmp_path: Path) -> None:
    cfg = sealed_config(tmp_path)
    ok(cfg, "keys", "kek-create", str(tmp_path / "keys.kek"))
    (tmp_path / "keys.kek").chmod(0o644)
    assert "has mode 0644: chmod 0400" in refused(
        cfg, "domain", "add", "example.com", "--policy", "demo"
    )
    ok(cfg, "status")  # a read-only command reads no key: it needs no KEK
