"""`rotator token ...`: the secret is shown once and recorded only as its hash; revoked
tokens stop verifying; refusals are one line and record nothing."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

from rotator.bootstrap import build
from rotator.config.settings import load_config

from .clirun import db_path, event_count, ok, refused


def test_create_list_revoke(cfg: Path) -> None:
    result = ok(cfg, "token", "create", "panel", "--scope", "read", "--scope", "provision")
    secret = result.stdout.strip()
    assert secret.startswith("rtr_") and len(secret) > 40
    assert "shown once" in result.stderr
    conn = sqlite3.connect(db_path(cfg))
    dump = "\n".join(str(r) for r in conn.execute("SELECT * FROM events"))
    conn.close()
    assert secret not in dump  # only its hash is recorded
    assert hashlib.sha256(secret.encode()).hexdigest() in dump
    listing = ok(cfg, "token", "list").stdout
    assert "panel" in listing and "read provision" in listing
    app = build(load_config(cfg), readonly=True)
    try:
        token = app.tokens.verify(secret)
        assert token is not None and token.scopes == ("read", "provision")
        assert app.tokens.verify(secret + "x") is None
        ok(cfg, "token", "revoke", "panel", "--reason", "rotated")
        assert app.tokens.verify(secret) is None  # caught up from the log
    finally:
        app.close()
    assert "panel" not in ok(cfg, "token", "list").stdout
    # a revoked name may be created again, with a new secret
    again = ok(cfg, "token", "create", "panel", "--scope", "admin").stdout.strip()
    assert again != secret
    logged = ok(cfg, "log", "--json").stdout
    assert secret not in logged and again not in logged
    types = [json.loads(line)["type"] for line in logged.splitlines()]
    assert types == ["TokenCreated", "TokenRevoked", "TokenCreated"]


def test_refusals_are_one_line(cfg: Path) -> None:
    ok(cfg, "token", "create", "panel", "--scope", "read")
    assert "token panel exists" in refused(cfg, "token", "create", "panel", "--scope", "read")
    assert "token name" in refused(cfg, "token", "create", "Bad Name", "--scope", "read")
    assert "no token ghost" in refused(cfg, "token", "revoke", "ghost")
    assert event_count(cfg) == 1
