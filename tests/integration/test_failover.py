"""Failover with real processes (tests/integration/failover.py): two daemons on one
PostgreSQL, a lease of 4 s renewed every second. The leader SIGKILLed in the middle of a
rotation (right after it wrote the signers, before it recorded the activation) and in the
middle of an emergency (right after it revoked the record, before it recorded that): the
standby leads within lease + 5 s and finishes the work from the log; no event is written
twice, no key is active before it was verified, and both signer targets end with the
log's active keys. A leader paused past its lease (SIGSTOP) and let go on (SIGCONT) records
nothing and steps down. PostgreSQL restarted under load: both daemons come back, one leads
again and the work goes on, with nobody's help."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rotator.demo.localdns import BindPair
from tests.support.postgres import Cluster, available, running

from .failover import (
    DOMAIN,
    LEASE,
    by_node,
    events,
    in_step,
    kill,
    leader,
    leads,
    lifecycle_checked,
    stopped,
    table,
    two_nodes,
    wait,
)
from .rotatorenv import RotatorEnv

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TAKEOVER = LEASE + 5  # the bound on a takeover, from the kill


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A server of this test's own: one test restarts it."""
    if not available():
        pytest.skip("PostgreSQL 15 is not installed")
    with running() as made:
        yield made


@pytest.fixture
def nodes(
    tmp_path: Path, cluster: Cluster, bind_factory: Callable[..., BindPair]
) -> Iterator[tuple[RotatorEnv, RotatorEnv, str]]:
    """Nodes a and b; a leads with the first key active, b is a standby; a's next start
    is the test's."""
    url = cluster.url(cluster.create_database())
    a, b = two_nodes(tmp_path, bind_factory(tmp_path / "bind", zones=(DOMAIN,)), url)
    try:
        a.cli("domain", "add", DOMAIN, "--policy", "failover", "--actor", "alice")
        a.start()
        wait("a leads", leads(url, "a"), 20, a)
        wait("the first key active", lambda: a.key_in_state(DOMAIN, "active"), 60, a)
        assert a.stop() == 0  # a clean stop lets the lease go
        yield a, b, url
    finally:
        a.close()
        b.close()


def start_both(a: RotatorEnv, b: RotatorEnv, url: str, stop_at: str = "") -> None:
    """a leads (and stops itself at `stop_at`, once), b stands by."""
    a.start(env={"ROTATOR_STOP_AT": stop_at} if stop_at else None)
    wait("a leads again", leads(url, "a"), 20, a)
    b.start()
    wait("b standing by", lambda: '"role": "standby"' in b.tail(200), 20, b)


def taken_over(a: RotatorEnv, b: RotatorEnv, url: str) -> float:
    """SIGKILL a, which stopped itself; seconds until b leads."""
    assert a.daemon is not None
    wait("a at its stop point", lambda: stopped(a.daemon), 60, a)  # type: ignore[arg-type]
    killed = time.monotonic()
    kill(a)
    wait("b leads", leads(url, "b"), TAKEOVER + 5, b)
    return time.monotonic() - killed


def active(env: RotatorEnv) -> list[tuple[str, str, str]]:
    return sorted((k.domain, k.selector, k.key_id) for k in env.list_keys(DOMAIN)
                  if k.state.value == "active")  # fmt: skip


def audited(*envs: RotatorEnv) -> None:
    """Each node's audit against its own anchor: intact."""
    for env in envs:
        out = env.cli("audit", "verify").stdout
        assert "hash chain intact" in out and "carry valid MACs" in out, out
        assert "the log agrees with every line of the anchor" in out, out


@pytest.mark.timeout(300)
def test_the_leader_killed_mid_rotation(
    nodes: tuple[RotatorEnv, RotatorEnv, str], tmp_path: Path
) -> None:
    a, b, url = nodes
    first = a.key_in_state(DOMAIN, "active")
    assert first is not None
    start_both(a, b, url, "after-signer-written")
    b.cli("rotate", DOMAIN, "--reason", "failover test", "--actor", "bob")  # on the standby
    took = taken_over(a, b, url)
    assert took <= TAKEOVER, f"b took {took:.1f}s to lead"
    second = wait(
        "the successor active", lambda: b.key_in_state(DOMAIN, "active", {first.key_id}), 60, b
    )
    assert b.stop() == 0
    log = events(url)
    lifecycle_checked(log)
    assert by_node(log, "b") and any(
        e["type"] == "KeyActivated" and e["key_id"] == second.key_id for e in by_node(log, "b")
    )
    in_step(tmp_path / "mta", active(b))
    status = b.cli("status").stdout
    assert "leader: none: node b's lease" in status  # let go at its clean stop
    *_, lead = [json.loads(x) for x in b.cli("status", "--json").stdout.splitlines()]
    assert (lead["state"], lead["leader"], lead["last_leader"]["node"]) == ("no leader", None, "b")
    audited(a, b)


@pytest.mark.timeout(300)
def test_the_leader_killed_mid_emergency(
    nodes: tuple[RotatorEnv, RotatorEnv, str], tmp_path: Path
) -> None:
    a, b, url = nodes
    first = a.key_in_state(DOMAIN, "active")
    assert first is not None
    start_both(a, b, url, "after-dns-revoke")
    done = b.cli(
        "rotate", "--emergency", DOMAIN, "--reason", "key leaked", "--actor", "carol",
        "--wait", "0",
    )  # fmt: skip
    assert "woken up" in done.stdout  # the leader, on this host
    assert first.key_id not in {k for _, _, k in table(tmp_path / "mta", "mx-a")}
    took = taken_over(a, b, url)
    assert took <= TAKEOVER, f"b took {took:.1f}s to lead"
    replacement = wait(
        "the replacement active", lambda: b.key_in_state(DOMAIN, "active", {first.key_id}), 60, b
    )
    wait(
        "the compromised key revoked",
        lambda: any(
            k.key_id == first.key_id and k.state.value in ("revoked", "destroyed")
            for k in b.list_keys(DOMAIN)
        ),
        60,
        b,
    )
    for which, (_rcode, aa, texts) in b.answers(first.record_name).items():
        assert aa and texts == ["v=DKIM1; p="], f"{which} serves {texts}"
    assert b.stop() == 0
    log = events(url)
    lifecycle_checked(log)
    revoked = [e for e in log if e["type"] == "KeyRevoked" and e["key_id"] == first.key_id]
    assert len(revoked) == 1 and revoked[0]["origin"].startswith("node b ")
    in_step(tmp_path / "mta", [(DOMAIN, replacement.selector, replacement.key_id)])
    audited(a, b)


@pytest.mark.timeout(300)
def test_a_leader_paused_past_its_lease_records_nothing_and_steps_down(
    nodes: tuple[RotatorEnv, RotatorEnv, str], tmp_path: Path
) -> None:
    a, b, url = nodes
    first = a.key_in_state(DOMAIN, "active")
    assert first is not None
    start_both(a, b, url, "after-signer-written")
    b.cli("rotate", DOMAIN, "--reason", "pause test", "--actor", "bob")
    assert a.daemon is not None
    wait("a paused before recording the switch", lambda: stopped(a.daemon), 60, a)  # type: ignore[arg-type]
    epoch = wait("b leads", leads(url, "b"), LEASE + 10, b)[1]
    second = wait(
        "b activates the successor",
        lambda: b.key_in_state(DOMAIN, "active", {first.key_id}),
        60,
        b,
    )
    before = by_node(events(url), "a")
    a.daemon.send_signal(signal.SIGCONT)
    wait("a steps down", lambda: "stepped_down" in a.tail(400), 20, a)
    time.sleep(2 * LEASE)  # a standby that tries every second, a leader that ticks
    assert a.daemon.poll() is None  # still running, as a standby
    assert by_node(events(url), "a") == before  # nothing recorded after it resumed
    assert leader(url) == ("b", epoch)
    # refused by the fence, or its session ended by the server if it paused inside a write
    assert "leadership_lost" in a.tail(400)
    # a paused in the signer lock (it stopped right after the write): b ended that hold
    assert "signer_lock_taken_over" in b.tail(400)
    in_step(tmp_path / "mta", [(DOMAIN, second.selector, second.key_id)])
    assert a.stop() == 0 and b.stop() == 0
    lifecycle_checked(events(url))
    audited(a, b)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("down", [0.0, LEASE + 1.0], ids=["restart", "down-past-the-lease"])
def test_both_daemons_come_back_after_postgresql_restarts_under_load(
    nodes: tuple[RotatorEnv, RotatorEnv, str], cluster: Cluster, tmp_path: Path, down: float
) -> None:
    """`down`: seconds the server stays away, past the lease: the leader steps down."""
    a, b, url = nodes
    start_both(a, b, url)
    names = [f"d{i}.{DOMAIN}" for i in range(8)]
    added: list[str] = []
    adding = threading.Thread(target=add_through_restart, args=(b, names, added))
    adding.start()
    try:
        wait("identities coming in", lambda: len(added) >= 3, 60, a, b)
        cluster.restart(down)  # with keys of the last ones on their way
        restarted = time.monotonic()
        now = wait("a node leads again", lambda: leader(url) if _up(url) else None, 30, a, b)
        assert time.monotonic() - restarted <= TAKEOVER, f"{now} after the restart"
    finally:
        adding.join(120)
    assert added == names
    wait(
        "every identity signed",
        lambda: len([k for k in b.list_keys() if k.state.value == "active"]) == 1 + len(names),
        120,
        a,
        b,
    )
    assert a.daemon is not None and b.daemon is not None
    assert a.daemon.poll() is None and b.daemon.poll() is None  # nobody restarted them
    old = {k.key_id for k in b.list_keys(DOMAIN) if k.state.value == "active"}
    b.cli("rotate", DOMAIN, "--reason", "after the restart", "--actor", "bob")
    wait("a rotation after the restart", lambda: b.key_in_state(DOMAIN, "active", old), 60, a, b)
    assert a.stop() == 0 and b.stop() == 0
    lifecycle_checked(events(url))
    in_step(tmp_path / "mta", sorted(
        (k.domain, k.selector, k.key_id) for k in b.list_keys() if k.state.value == "active"
    ))  # fmt: skip
    audited(a, b)


def add_through_restart(env: RotatorEnv, names: list[str], done: list[str]) -> None:
    """`domain add` of each name into `done`, again while the server is away (a command
    that failed at its commit may have recorded: "already" is done)."""
    for name in names:
        deadline = time.monotonic() + 60
        while True:
            out = env.cli(
                "domain", "add", name, "--policy", "failover", "--zone", DOMAIN,
                "--actor", "alice", check=False,
            )  # fmt: skip
            if out.returncode == 0 or "already" in out.stderr:
                break
            assert time.monotonic() < deadline, out.stderr
            time.sleep(0.5)
        done.append(name)


def _up(url: str) -> bool:
    try:
        leader(url)
    except Exception:
        return False
    return True
