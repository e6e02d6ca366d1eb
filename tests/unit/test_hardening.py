"""What an operator's acceptance run found: bad input and broken surroundings get one clear
line, a non-zero exit and no change; one owner per sending domain; repeated requests are
not recorded twice. (The read-only mount cases need root: tests/integration.)"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from structlog.testing import capture_logs

from rotator.adapters.store.sqlite import SqliteEventStore
from rotator.daemon import SignalPipe
from rotator.domain import events as ev
from tests.support.cli import customer_add

from .clirun import add, db_path, event_count, ok, refused, run

HEADER = "customer,domain,mode,policy,signing_domain\n"
T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def csv_file(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "customers.csv"
    path.write_bytes(data)
    return str(path)


# --- customer import: every problem one line naming the file and the line ------------------


def test_csv_that_is_not_utf8_is_one_line(cfg: Path, tmp_path: Path) -> None:
    data = (HEADER + "Caf\xe9,cafe.example,third-party,demo,cafe.esp.test\n").encode("latin-1")
    line = refused(cfg, "customer", "import", csv_file(tmp_path, data))
    assert "not UTF-8 text" in line and "CSV UTF-8" in line


def test_csv_with_a_huge_field_is_one_line(cfg: Path, tmp_path: Path) -> None:
    data = (HEADER + "Acme," + "a" * 200_000 + ",third-party,demo,x.esp.test\n").encode()
    line = refused(cfg, "customer", "import", csv_file(tmp_path, data))
    assert "customers.csv line 2" in line and "field larger than field limit" in line


def test_csv_saved_by_a_spreadsheet_with_a_bom_imports(cfg: Path, tmp_path: Path) -> None:
    data = b"\xef\xbb\xbf" + (HEADER + "Acme,acme.example,third-party,demo,a.esp.test\n").encode()
    out = ok(cfg, "customer", "import", csv_file(tmp_path, data)).stdout
    assert "imported 1 customer domains" in out
    assert event_count(cfg) == 1


def test_csv_row_with_more_fields_than_the_header_names_its_line(cfg: Path, tmp_path: Path) -> None:
    data = (
        HEADER
        + "Acme,acme.example,third-party,demo,a.esp.test\n"
        + "Beta,beta.example,third-party,demo,b.esp.test,surprise\n"
    ).encode()
    line = refused(cfg, "customer", "import", csv_file(tmp_path, data))
    assert "customers.csv line 3: 6 fields but the header has 5" in line


def test_csv_with_an_unknown_column_is_refused(cfg: Path, tmp_path: Path) -> None:
    data = b"customer,domain,mode,policy,signing-domain\nA,a.example,third-party,demo,x.test\n"
    line = refused(cfg, "customer", "import", csv_file(tmp_path, data))
    assert "unknown column 'signing-domain'" in line


def test_config_naming_a_directory_is_one_line(cfg: Path, tmp_path: Path) -> None:
    result = run(tmp_path, "status")  # --config <a directory>
    assert result.exit_code != 0
    assert result.stderr.strip().splitlines() == [
        f"Error: {tmp_path}: is a directory; pass --config with the path of rotator.toml"
    ]


# --- input that reaches the audit log or the signer ---------------------------------------


def test_actor_with_a_newline_is_refused(cfg: Path) -> None:
    line = refused(cfg, "domain", "add", "example.com", "--policy", "demo", "--actor", "a\nb")
    assert "--actor" in line and "control characters" in line


def test_reason_with_an_escape_sequence_is_refused(cfg: Path) -> None:
    line = refused(cfg, "domain", "add", "example.com", "--policy", "demo", "--reason", "\x1b[2J")
    assert "--reason" in line


def test_log_escapes_control_characters_already_in_the_log(cfg: Path) -> None:
    add(cfg, "example.com")
    store = SqliteEventStore(db_path(cfg))
    try:  # an event written by an older rotator, or straight into the database
        store.append(
            [
                ev.RotationRequested(
                    at=T0,
                    actor="eve\n     2 2026-11-24T00:00:00.000 KeyRevoked forged",
                    identity="example.com",
                    domain="example.com",
                )
            ],
            {},
        )
    finally:
        store.close()
    out = ok(cfg, "log").stdout
    assert len(out.splitlines()) == 2
    assert "eve\\x0a" in out


def test_mail_domains_follow_rfc_5321(cfg: Path) -> None:
    line = refused(cfg, "domain", "add", "foo_bar.test", "--policy", "demo")
    assert "underscore" in line and "foo_bar" in line
    line = refused(cfg, *customer_add("Acme", "acme_mail.example", "ns-delegation"))
    assert "domain:" in line and "underscore" in line
    # a zone may hold underscores: that is where DKIM records live
    add(cfg, "example.org", "--zone", "myesp._domainkey.example.org")


def test_signing_pattern_is_only_the_identitys_own_mail(cfg: Path) -> None:
    for bad in ("*", "*@other.example", "*@example.com\n*", "*@example.com *"):
        line = refused(
            cfg, "domain", "add", "example.com", "--policy", "demo", "--signing-pattern", bad
        )
        assert "--signing-pattern" in line
    add(cfg, "example.com", "--signing-pattern", "*@*.example.com")


# --- one owner per sending domain ------------------------------------------------------------


def test_a_sending_domain_has_one_owner(cfg: Path, tmp_path: Path) -> None:
    ok(cfg, *customer_add("Acme", "acme.example", "third-party", signing_domain="a.esp.test"))
    line = refused(
        cfg, *customer_add("Mallory", "acme.example", "third-party", signing_domain="m.esp.test")
    )
    assert "acme.example is already signed for customer Acme (identity a.esp.test)" in line
    line = refused(cfg, *customer_add("Mallory", "acme.example", "ns-delegation"))
    assert "customer Acme" in line
    line = refused(cfg, "domain", "add", "acme.example", "--policy", "demo")
    assert "customer Acme" in line
    line = refused(cfg, "esp", "add", "acme.example", "--policy", "demo")
    assert "customer Acme" in line
    ok(cfg, "esp", "add", "fbl.esp.test", "--policy", "demo")
    line = refused(
        cfg, *customer_add("Eve", "fbl.esp.test", "third-party", signing_domain="e.esp.test")
    )
    assert "fbl.esp.test is already signed for the ESP" in line


def test_two_rows_of_one_csv_cannot_claim_one_domain(cfg: Path, tmp_path: Path) -> None:
    data = (
        HEADER
        + "Acme,acme.example,third-party,demo,a.esp.test\n"
        + "Mallory,acme.example,third-party,demo,m.esp.test\n"
    ).encode()
    line = refused(cfg, "customer", "import", csv_file(tmp_path, data))
    assert "customers.csv line 3: sending domain acme.example is claimed twice" in line
    assert "customers.csv line 2" in line


def test_signing_table_never_gets_two_owners_for_one_domain(cfg: Path) -> None:
    ok(cfg, *customer_add("Acme", "acme.example", "third-party", signing_domain="a.esp.test"))
    refused(
        cfg, *customer_add("Mallory", "acme.example", "third-party", signing_domain="m.esp.test")
    )
    conn = sqlite3.connect(db_path(cfg))
    try:
        owners = conn.execute(
            "SELECT customer FROM identities WHERE sending_domain = 'acme.example'"
        ).fetchall()
    finally:
        conn.close()
    assert owners == [("Acme",)]


# --- repeats and exit codes ----------------------------------------------------------------


def test_a_second_rotate_before_the_daemon_acted_is_not_recorded(cfg: Path) -> None:
    add(cfg, "example.com")
    ok(cfg, "rotate", "example.com", "--actor", "alice", "--reason", "audit")
    out = ok(cfg, "rotate", "example.com", "--actor", "bob", "--reason", "audit again").stdout
    assert "already requested" in out
    types = [json.loads(x)["type"] for x in ok(cfg, "log", "--json").stdout.splitlines()]
    assert types == ["IdentityAdded", "RotationRequested"]


def test_run_once_exits_non_zero_when_every_step_failed(cfg: Path) -> None:
    add(cfg, "example.com")
    ok(cfg, "run", "--once")  # generated the key: progress
    time.sleep(0.6)  # the demo policy retries a failed publish after 0.5 s
    result = run(cfg, "run", "--once")  # the primary (127.0.0.1:1) refuses every UPDATE
    assert result.exit_code == 1
    assert "every step failed" in result.stderr


# --- every command, broken surroundings: never a traceback ----------------------------------

COMMANDS: list[tuple[str, ...]] = [
    ("init",),
    ("policy", "check"),
    ("domain", "add", "example.com", "--policy", "demo"),
    ("domain", "list"),
    ("esp", "add", "fbl.example", "--policy", "demo"),
    (
        "customer",
        "add",
        "Acme",
        "--domain",
        "acme.example",
        "--mode",
        "ns-delegation",
        "--policy",
        "demo",
    ),
    ("customer", "list"),
    ("customer", "check", "Acme"),
    ("status",),
    ("rotate", "example.com"),
    ("rotate", "--emergency", "example.com", "--reason", "x", "--wait", "0"),
    ("log",),
    ("run", "--once"),
    ("db", "rebuild", "--check"),
    ("audit", "verify"),
]


def every_command_answers_in_one_line(cfg: Path) -> None:
    for args in COMMANDS:
        result = run(cfg, *args)
        errors = [ln for ln in result.stderr.splitlines() if ln.startswith("Error: ")]
        assert not isinstance(result.exception, Exception) or isinstance(
            result.exception, SystemExit
        ), (args, repr(result.exception))
        if result.exit_code != 0:
            assert len(errors) == 1, (args, result.stderr)


def test_every_command_with_a_damaged_database(cfg: Path) -> None:
    db = db_path(cfg)
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(b"this is not a database" * 100)
    every_command_answers_in_one_line(cfg)


def test_every_command_with_the_database_path_taken_by_a_directory(cfg: Path) -> None:
    db_path(cfg).mkdir(parents=True)
    every_command_answers_in_one_line(cfg)


def test_every_command_with_a_missing_policy_dir(cfg: Path) -> None:
    cfg.write_text(cfg.read_text().replace("policy_dir = ", 'policy_dir = "/nonexistent" #'))
    every_command_answers_in_one_line(cfg)


def test_every_command_with_a_key_dir_that_is_a_file(cfg: Path) -> None:
    (cfg.parent / "keys").write_text("not a directory")
    add(cfg, "example.com")
    every_command_answers_in_one_line(cfg)


def test_signals_reach_the_daemon_loop_as_bytes_without_running_code_in_a_handler() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1)}
    with capture_logs() as logs, SignalPipe() as pipe:
        # a handler that logged (or locked) would deadlock when a second signal interrupts it
        for sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGTERM):
            signal.raise_signal(sig)
        assert logs == []
        got: list[int] = []
        deadline = time.monotonic() + 5
        while len(got) < 3 and time.monotonic() < deadline:
            got += pipe.wait(0.5)
        assert got == [signal.SIGUSR1, signal.SIGTERM, signal.SIGTERM]
        assert pipe.wait(0.01) == []
    assert {s: signal.getsignal(s) for s in before} == before
