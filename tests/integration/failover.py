"""Two rotator nodes on one PostgreSQL server (a private one per test), as an operator runs
them: each its own config, state directory (audit key copy, its own anchor), key directory
and KEK copy, both writing the same two local signer targets (two MTAs' directories), one
BIND pair; daemons as subprocesses. What the failover tests read: who leads (the lease row),
the log, the targets' tables, a process's state."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from rotator.demo.localdns import BindPair

from .rotatorenv import RotatorEnv

DOMAIN = "example.test"
LEASE, RENEW, RETRY = 4, 2, 1  # seconds: short, for the tests
TARGETS = ("mx-a", "mx-b")
# a rotation only when asked (an operator's `rotate`): nothing scheduled gets in the way
POLICY = """description = "fast steps, rotations only when asked"
[key]
algorithm = "ed25519"
[rotation]
interval = "1h"
[drain]
max_queue_time = "2s"
multiplier = 1
[dns]
ttl = 1
[selector]
template = "s{hh}{mi}{ss}.{esp}"
esp = "myesp"
collision = "suffix"
[verify]
timeout = "60s"
[retry]
base = "0.5s"
max = "2s"
[tombstone]
retention = "5s"
"""


def write_node(
    base: Path,
    name: str,
    bind: BindPair,
    url: str,
    shared: Path,
    lease: tuple[float, float, float] = (LEASE, RENEW, RETRY),
    extra: str = "",
) -> RotatorEnv:
    """Node `name`'s config: `lease` is (lease, renew, retry) seconds, `extra` more TOML."""
    work = base / name
    work.mkdir(parents=True)
    policies = base / "policies"
    policies.mkdir(exist_ok=True)
    (policies / "failover.toml").write_text(POLICY)
    targets = "".join(
        f"""
[[targets]]
name = "{t}"
format = "json"
directory = "{shared / t}"
reload = ["sh", "-c", "date >> {shared / t}.reloads"]
key_grace = 0
"""
        for t in TARGETS
    )
    config = work / "rotator.toml"
    config.write_text(
        f"""database = "{url}"
state_dir = "{work / "state"}"
key_dir = "keys"
policy_dir = "{policies}"
tick_seconds = 0.5

[dns]
{bind.dns_config()}
[keys]
store = "database"
database = "{url}"
kek_file = "{work / "kek"}"

[leadership]
node = "{name}"
lease_seconds = {lease[0]}
renew_seconds = {lease[1]}
retry_seconds = {lease[2]}
{targets}{extra}"""
    )
    config.chmod(0o600)
    env = RotatorEnv(work, bind, policies, config)
    env.database = url
    return env


def two_nodes(base: Path, bind: BindPair, url: str, **kw: Any) -> tuple[RotatorEnv, RotatorEnv]:
    """Nodes a and b, the database made by a's `init`; b gets a's KEK and audit key (what
    an operator copies to every node) and nothing else. `kw`: write_node's, `extra` a
    function of the node's name."""
    shared = base / "mta"
    for t in TARGETS:
        (shared / t).mkdir(parents=True)
    extra = kw.pop("extra", lambda name: "")
    a, b = (write_node(base, n, bind, url, shared, extra=extra(n), **kw) for n in ("a", "b"))
    a.cli("keys", "kek-create", str(a.workdir / "kek"))
    a.cli("init")
    for name in ("kek", "state/audit.key"):
        (b.workdir / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(a.workdir / name, b.workdir / name)
    return a, b


def leader(url: str) -> tuple[str, int] | None:
    """(node, epoch) of the live lease, if one is."""
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT node, epoch FROM leader WHERE expires_at > clock_timestamp()"
        ).fetchone()
    return (str(row[0]), int(row[1])) if row else None


def leads(url: str, node: str) -> Callable[[], tuple[str, int] | None]:
    def check() -> tuple[str, int] | None:
        try:
            now = leader(url)
        except psycopg.OperationalError:  # the server restarting
            return None
        return now if now is not None and now[0] == node else None

    return check


def events(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn:
        cursor = conn.execute(
            "SELECT position, type, key_id, payload FROM events ORDER BY position"
        )
        return [
            {"position": p, "type": t, "key_id": k, "origin": json.loads(d).get("origin", "")}
            for p, t, k, d in cursor
        ]


def by_node(log: list[dict[str, Any]], node: str) -> list[dict[str, Any]]:
    return [e for e in log if e["origin"].startswith(f"node {node} ")]


def stopped(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the process stopped itself (SIGSTOP: state T)."""
    try:
        stat = Path(f"/proc/{proc.pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] in ("T", "t")


def wait(what: str, predicate: Callable[[], Any], timeout: float, *envs: RotatorEnv) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    tails = "\n".join(f"--- {e.workdir.name}:\n{e.tail(40)}" for e in envs)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tails}")


def kill(env: RotatorEnv) -> None:
    """SIGKILL by pid, reaped."""
    proc, env.daemon = env.daemon, None
    assert proc is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def table(shared: Path, target: str) -> list[tuple[str, str, str]]:
    """(domain, selector, key_id) of every signature a target's signing.json lists."""
    path = shared / target / "signing.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    return sorted(
        (s["d"], s["s"], s["key_id"]) for sender in data["senders"] for s in sender["signatures"]
    )


def lifecycle_checked(log: list[dict[str, Any]]) -> None:
    """No event written twice (one of each step per key), and no key active before it was
    verified."""
    steps = ("KeyGenerated", "KeyPublished", "KeyVerified", "KeyActivated", "KeyRevoked")
    seen: dict[tuple[str, str], int] = {}
    for e in log:
        if e["type"] in steps:
            step = (e["key_id"], e["type"])
            assert step not in seen, f"{e['type']} of {e['key_id']} twice: {seen[step]}, {e}"
            seen[step] = e["position"]
    for (key_id, kind), position in seen.items():
        if kind == "KeyActivated":
            verified = seen.get((key_id, "KeyVerified"))
            assert verified is not None and verified < position, f"{key_id} active unverified"


def in_step(shared: Path, active: list[tuple[str, str, str]]) -> None:
    """Every target lists exactly the log's active keys, and holds their files."""
    for target in TARGETS:
        assert table(shared, target) == sorted(active), target
        for _, _, key_id in active:
            assert (shared / target / "keys" / f"{key_id}.pem").exists(), (target, key_id)
