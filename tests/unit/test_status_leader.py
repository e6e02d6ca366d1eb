"""`rotator status --json` says which daemon leads, as the table's last line does: one
line more on a shared database (state `leader`, `no leader` or `leader unknown`, with the
rows' fields and `leader` / `last_leader`), none with one node only (SQLite). Through a fake
leadership for every case, and through the real PgLeadership on the private PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from rotator.adapters.store.postgres.leadership import PgLeadership
from rotator.bootstrap import App, build
from rotator.cli import cli
from rotator.config.settings import Config
from rotator.domain.errors import StoreError
from rotator.ports import Leader, Lease
from rotator.timeutil import iso

from .clirun import ok, write_config
from .conftest import UnitEnv, default_policies

ROW_FIELDS = {
    "domain", "identity", "selector", "state", "since", "next_action", "next_action_at",
    "attempts", "last_error", "code", "key_id", "drift",
}  # fmt: skip
SINCE = datetime(2026, 12, 7, 12, 0, 3, tzinfo=UTC)
EXPIRES = SINCE + timedelta(minutes=1)


def lines(result: Result) -> list[dict[str, Any]]:
    return [json.loads(x) for x in result.stdout.splitlines()]


def with_a_key(tmp_path: Path) -> Path:
    """A config whose SQLite database holds example.com with a key (one tick's worth)."""
    cfg = write_config(tmp_path)  # its database is state/rotator.db: this environment's
    env = UnitEnv(tmp_path / "state", default_policies())
    try:
        env.app.onboarding.add_identity("example.com", "demo")
        env.app.lifecycle.tick()
    finally:
        env.store.close()
    return cfg


def test_one_node_has_no_leader_line(tmp_path: Path) -> None:
    cfg = with_a_key(tmp_path)
    assert "leader" not in ok(cfg, "status").stdout  # the table says nothing of a leader
    (row,) = lines(ok(cfg, "status", "--json"))  # the key's row, and no line beside it
    assert row["domain"] == "example.com" and "leader" not in row


class Shared:
    """A shared database's leadership as `status` reads it: `current` is `seen`, or raises
    it."""

    shared = True

    def __init__(self, seen: Leader | StoreError | None) -> None:
        self.seen = seen

    def acquire(self, node: str) -> Lease | None:
        raise AssertionError("status takes no lease")

    def renew(self, lease: Lease) -> Lease | None:
        raise AssertionError("status takes no lease")

    def release(self, lease: Lease) -> None:
        raise AssertionError("status takes no lease")

    def current(self) -> Leader | None:
        if isinstance(self.seen, StoreError):
            raise self.seen
        return self.seen

    def wake(self) -> int | None:
        return None

    def close(self) -> None:
        return None


def status_with(cfg: Path, seen: Leader | StoreError | None, *args: str) -> Result:
    def factory(config: Config, readonly: bool = False, command: bool = True) -> App:
        app = build(config, readonly=readonly, command=command)
        app.leadership.close()
        app.leadership = Shared(seen)
        return app

    runner = CliRunner(env={"COLUMNS": "200", "ROTATOR_CONFIG": None})
    result = runner.invoke(cli, ["--config", str(cfg), "status", *args], obj={"factory": factory})
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_the_leader_is_the_last_line(tmp_path: Path) -> None:
    cfg = with_a_key(tmp_path)
    leader = Leader("mx-rotator-1", 3, SINCE, EXPIRES, "4242@mx-rotator-1", live=True)
    *rows, last = lines(status_with(cfg, leader, "--json"))
    assert [r["domain"] for r in rows] == ["example.com"]
    assert all("leader" not in r for r in rows)  # a key's row stays as it was
    assert set(last) == ROW_FIELDS | {"leader", "last_leader"}
    assert last["leader"] == {
        "node": "mx-rotator-1", "epoch": 3, "since": iso(SINCE), "expires": iso(EXPIRES),
    }  # fmt: skip
    assert (last["state"], last["since"], last["last_leader"]) == ("leader", iso(SINCE), None)
    assert (last["domain"], last["key_id"], last["last_error"]) == (None, None, None)
    # the same facts as the table's line
    text = " ".join(status_with(cfg, leader).stdout.split())
    assert f"leader mx-rotator-1 since {iso(SINCE)[:19]}Z" in text and "(epoch 3)" in text
    # a fleet fact: shown with --domain too, as the table shows it
    *_, only = lines(status_with(cfg, leader, "--json", "--domain", "example.com"))
    assert only["leader"]["node"] == "mx-rotator-1"


def test_no_leader_when_no_daemon_took_the_lease(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    ok(cfg, "init")
    (line,) = lines(status_with(cfg, None, "--json"))  # no keys: the leader's line alone
    assert (line["state"], line["leader"], line["last_leader"]) == ("no leader", None, None)
    assert line["last_error"] == "no daemon has taken the lease" and line["since"] is None
    assert "leader: none yet (no daemon has taken the lease)" in status_with(cfg, None).stdout


def test_no_leader_when_the_lease_ran_out(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    ok(cfg, "init")
    gone = Leader("b", 2, SINCE, EXPIRES, "7@b", live=False)
    (line,) = lines(status_with(cfg, gone, "--json"))
    assert (line["state"], line["leader"], line["since"]) == ("no leader", None, iso(EXPIRES))
    assert line["last_leader"] == {"node": "b", "epoch": 2, "since": iso(SINCE),
                                   "expires": iso(EXPIRES)}  # fmt: skip
    assert line["last_error"] == "node b's lease (epoch 2) ran out"
    assert "leader: none: node b's lease (epoch 2) ran out" in status_with(cfg, gone).stdout


def test_leader_unknown_when_the_lease_cannot_be_read(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    ok(cfg, "init")
    down = StoreError("database db.example: connection refused")
    (line,) = lines(status_with(cfg, down, "--json"))
    assert (line["state"], line["leader"], line["last_leader"]) == ("leader unknown", None, None)
    assert line["last_error"] == "database db.example: connection refused"
    assert (
        "leader unknown: database db.example: connection refused" in status_with(cfg, down).stdout
    )


# --- the real lease, on PostgreSQL ------------------------------------------------------------


def on_postgres(tmp_path: Path, url: str) -> Path:
    cfg = write_config(tmp_path)
    text = cfg.read_text().replace('database = "state/rotator.db"', f'database = "{url}"')
    cfg.write_text(f'state_dir = "state"\n{text}')
    ok(cfg, "init")
    return cfg


def test_status_json_names_the_node_holding_the_lease_on_postgresql(
    tmp_path: Path, postgres_url: str
) -> None:
    cfg = on_postgres(tmp_path, postgres_url)
    (line,) = lines(ok(cfg, "status", "--json"))
    assert (line["state"], line["leader"]) == ("no leader", None)

    leadership = PgLeadership(postgres_url, "test", lease=60, renew=40)
    try:
        lease = leadership.acquire("node-a")
        assert lease is not None
        (line,) = lines(ok(cfg, "status", "--json"))
        assert line["state"] == "leader"
        assert line["leader"] == {
            "node": "node-a", "epoch": 1, "since": iso(lease.since), "expires": iso(lease.expires),
        }  # fmt: skip
        text = " ".join(ok(cfg, "status").stdout.split())
        assert f"leader node-a since {iso(lease.since)[:19]}Z" in text and "(epoch 1)" in text

        leadership.release(lease)  # a clean stop: the lease runs out now
        (line,) = lines(ok(cfg, "status", "--json"))
        assert (line["state"], line["leader"]) == ("no leader", None)
        assert (line["last_leader"]["node"], line["last_leader"]["epoch"]) == ("node-a", 1)

        taken = leadership.acquire("node-b")  # the standby takes over: one epoch more
        assert taken is not None
        (line,) = lines(ok(cfg, "status", "--json"))
        assert (line["leader"]["node"], line["leader"]["epoch"]) == ("node-b", 2)
        assert line["since"] == iso(taken.since)
    finally:
        leadership.close()
