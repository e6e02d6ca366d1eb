"""The operator CLI against a temporary config and database (no DNS is contacted: no tick
runs). Every refusal is one line on stderr, a non-zero exit, and no new event."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from .clirun import add, db_path, event_count, ok, refused, run, write_config

# --- happy paths ----------------------------------------------------------------------------


def test_domain_add_then_list_and_status(cfg: Path) -> None:
    result = add(cfg, "Example.COM.", "--actor", "alice", "--reason", "onboarding")
    assert "added example.com (zone example.com, policy demo)" in result.stdout
    assert event_count(cfg) == 1
    listing = ok(cfg, "domain", "list").stdout
    assert "example.com" in listing and "demo" in listing
    status = ok(cfg, "status").stdout
    assert "example.com" in status and "no key yet" in status and "generate" in status
    assert ok(cfg, "status", "--json").stdout == ""  # identities without keys have no rows


def test_rotate_asks_for_both_keys_of_a_two_algorithm_policy(cfg: Path) -> None:
    add(cfg, "example.com", "--policy", "demo-dual")
    out = ok(cfg, "rotate", "example.com", "--reason", "audit").stdout
    assert "rotation of example.com requested" in out
    assert "rotation of example.com~ed25519 requested" in out
    again = ok(cfg, "rotate", "example.com", "--reason", "audit").stdout
    assert "rotation of example.com~ed25519 already requested" in again


def test_status_and_log_name_the_companion_identity(cfg: Path) -> None:
    add(cfg, "example.com", "--policy", "demo-dual")
    rows = ok(cfg, "status").stdout.splitlines()
    assert [r.strip("│ ").split()[0] for r in rows if "no key yet" in r] == [
        "example.com",
        "example.com~ed25519",
    ]
    log = ok(cfg, "log").stdout.splitlines()
    assert any(" IdentityAdded " in line and " example.com~ed25519 " in line for line in log)
    lines = [json.loads(line) for line in ok(cfg, "log", "--json").stdout.splitlines()]
    assert {(e["domain"], e["identity"]) for e in lines} == {
        ("example.com", "example.com"),
        ("example.com", "example.com~ed25519"),
    }


def test_domain_add_with_delegated_zone(cfg: Path) -> None:
    result = add(cfg, "example.org", "--zone", "myesp._domainkey.example.org")
    assert "zone myesp._domainkey.example.org" in result.stdout
    assert "myesp._domainkey.example.org" in ok(cfg, "domain", "list").stdout


def test_log_json_one_object_per_line(cfg: Path) -> None:
    add(cfg, "example.com", "--actor", "alice", "--reason", "onboarding")
    ok(cfg, "rotate", "example.com", "--actor", "bob", "--reason", "quarterly audit")
    lines = ok(cfg, "log", "--json").stdout.splitlines()
    assert len(lines) == 2
    objs = [json.loads(ln) for ln in lines]
    assert [(o["type"], o["actor"], o["reason"]) for o in objs] == [
        ("IdentityAdded", "alice", "onboarding"),
        ("RotationRequested", "bob", "quarterly audit"),
    ]
    assert [o["position"] for o in objs] == [1, 2]
    assert all(o["domain"] == "example.com" and len(o["hash"]) == 64 for o in objs)
    assert objs[0]["payload"]["policy"] == "demo"
    only = ok(cfg, "log", "--json", "--type", "RotationRequested").stdout.splitlines()
    assert [json.loads(ln)["type"] for ln in only] == ["RotationRequested"]
    assert ok(cfg, "log", "--json", "--since", "1h").stdout.count("\n") == 2
    assert ok(cfg, "log", "--json", "--until", "2000-01-01T00:00:00Z").stdout == ""
    assert ok(cfg, "log", "--json", "--actor", "bob").stdout.count("\n") == 1


def test_log_text(cfg: Path) -> None:
    add(cfg, "example.com", "--actor", "alice", "--reason", "onboarding")
    out = ok(cfg, "log").stdout
    assert "IdentityAdded" in out and "by alice (onboarding)" in out


def test_audit_verify_and_db_rebuild_check(cfg: Path) -> None:
    add(cfg, "example.com")
    add(cfg, "example.net")
    assert "hash chain intact over 2 events" in ok(cfg, "audit", "verify").stdout
    assert "projection matches the event log" in ok(cfg, "db", "rebuild", "--check").stdout
    assert "0 differences repaired" in ok(cfg, "db", "rebuild").stdout


def test_audit_verify_reports_tampering(cfg: Path) -> None:
    add(cfg, "example.com")
    add(cfg, "example.net")
    conn = sqlite3.connect(db_path(cfg))
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute("UPDATE events SET actor = 'mallory' WHERE position = 1")
    conn.commit()
    conn.close()
    line = refused(cfg, "audit", "verify")
    assert "hash chain broken" in line and "event 1" in line


def test_db_rebuild_check_reports_drift(cfg: Path) -> None:
    add(cfg, "example.com")
    conn = sqlite3.connect(db_path(cfg))
    conn.execute("UPDATE identities SET policy = 'default'")
    conn.commit()
    conn.close()
    result = run(cfg, "db", "rebuild", "--check")
    assert result.exit_code != 0
    assert "identity example.com: policy live='default' rebuilt='demo'" in result.stdout
    assert "1 differences" in result.stderr
    ok(cfg, "db", "rebuild")
    ok(cfg, "db", "rebuild", "--check")


def test_policy_check_shows_drain_windows(cfg: Path) -> None:
    out = ok(cfg, "policy", "check").stdout
    default = next(ln for ln in out.splitlines() if "default" in ln)
    demo = next(ln for ln in out.splitlines() if "demo" in ln)
    assert "15d (3 x 5d)" in default
    assert "rsa-2048" in default
    assert "9s (3 x 3s)" in demo


def test_policy_check_given_files(cfg: Path, tmp_path: Path) -> None:
    good = tmp_path / "quick.toml"
    good.write_text('[key]\nalgorithm = "ed25519"\n[drain]\nmax_queue_time = "2d"\n')
    out = ok(cfg, "policy", "check", str(good)).stdout
    assert "quick" in out and "6d (3 x 2d)" in out and "ed25519-256" in out


def test_init_reports_paths(cfg: Path) -> None:
    out = ok(cfg, "init").stdout
    assert "default, demo" in out
    assert "127.0.0.1:1" in out
    assert db_path(cfg).exists()


# --- refusals -------------------------------------------------------------------------------


def test_unknown_policy(cfg: Path) -> None:
    line = refused(cfg, "domain", "add", "example.com", "--policy", "nope")
    assert "policy 'nope' not found" in line and "default, demo" in line


def test_invalid_domain(cfg: Path) -> None:
    line = refused(cfg, "domain", "add", "exa mple.com", "--policy", "demo")
    assert "'exa mple.com'" in line


def test_duplicate_domain(cfg: Path) -> None:
    add(cfg, "example.com")
    line = refused(cfg, "domain", "add", "EXAMPLE.com.", "--policy", "demo")
    assert "example.com is already managed" in line


def test_zone_not_containing_the_domain(cfg: Path) -> None:
    line = refused(cfg, "domain", "add", "example.com", "--policy", "demo", "--zone", "other.org")
    assert "zone 'other.org' cannot hold DKIM records of 'example.com'" in line


def test_rotate_unmanaged_domain(cfg: Path) -> None:
    add(cfg, "example.com")
    line = refused(cfg, "rotate", "example.org", "--reason", "test")
    assert "example.org is not managed" in line


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--type", "Bogus"), "'Bogus'"),
        (("--since", "yesterday-ish"), "'yesterday-ish'"),
    ],
)
def test_log_bad_filters_one_line(cfg: Path, args: tuple[str, ...], named: str) -> None:
    add(cfg, "example.com")
    line = refused(cfg, "log", *args)
    assert named in line


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--type", "Bogus"), "unknown event type 'Bogus'"),
        (("--since", "yesterday-ish"), "'yesterday-ish' is neither an ISO time"),
        (("--until", "soonish"), "'soonish' is neither an ISO time"),
    ],
)
def test_log_bad_filters_are_refused(cfg: Path, args: tuple[str, ...], named: str) -> None:
    add(cfg, "example.com")
    result = run(cfg, "log", *args)
    assert result.exit_code != 0
    assert named in result.stderr
    assert result.stdout == ""
    assert event_count(cfg) == 1


def test_missing_config_file(tmp_path: Path) -> None:
    line = refused(tmp_path / "absent.toml", "domain", "list")
    assert f"{tmp_path / 'absent.toml'}: config file not found" in line


def test_config_with_bad_tsig_secret(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, tsig_secret="not base64!")
    line = refused(cfg, "domain", "add", "example.com", "--policy", "demo")
    assert "dns.tsig_secret" in line and "not base64" in line
    assert not db_path(cfg).exists()


def test_config_invalid_toml(tmp_path: Path) -> None:
    cfg = tmp_path / "rotator.toml"
    cfg.write_text("database = \n")
    line = refused(cfg, "status")
    assert "invalid TOML" in line


def test_policy_check_broken_file(cfg: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[drain]\nmultiplier = 0.5\n")
    line = refused(cfg, "policy", "check", str(bad))
    assert f"{bad}: [drain].multiplier" in line
    broken = tmp_path / "broken.toml"
    broken.write_text("[drain\n")
    line = refused(cfg, "policy", "check", str(broken))
    assert f"{broken}: invalid TOML" in line


def test_refusal_after_state_exists_changes_nothing(cfg: Path) -> None:
    add(cfg, "example.com")
    ok(cfg, "rotate", "example.com")
    before = ok(cfg, "log", "--json").stdout
    refused(cfg, "domain", "add", "example.com", "--policy", "demo")
    refused(cfg, "domain", "add", "new.example", "--policy", "nope")
    assert ok(cfg, "log", "--json").stdout == before
    assert "hash chain intact over 2 events" in ok(cfg, "audit", "verify").stdout
