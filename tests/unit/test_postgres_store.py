"""What only the PostgreSQL store has: the `?` dialect turned into psycopg's, a connection
the server dropped opened again, a writer that waits too long for the writers' lock told
in one line, the one-daemon-per-node advisory lock, the signer lock across nodes, and
writes refused by the server itself on a read-only connection. Runs against the tests'
private PostgreSQL."""

from __future__ import annotations

import os
import socket

import psycopg
import pytest

from rotator.adapters.store.postgres import connection
from rotator.adapters.store.postgres.locks import (
    NAMESPACE,
    WRITERS,
    AdvisoryDaemonLock,
    AdvisorySignerLock,
)
from rotator.adapters.store.postgres.store import PostgresEventStore
from rotator.domain.errors import AlreadyRunning, SignerLockBusy, StoreError

from ..contract.builders import added, five_events


def test_the_dialect_keeps_literals_and_doubles_percent_signs() -> None:
    sql = "SELECT * FROM t WHERE a = ? AND p LIKE '*@*.%' AND q = '?' AND r IN (?, ?)"
    assert connection.dialect(sql) == (
        "SELECT * FROM t WHERE a = %s AND p LIKE '*@*.%%' AND q = '?' AND r IN (%s, %s)"
    )


def test_a_dropped_connection_fails_one_statement_then_opens_again(postgres_url: str) -> None:
    store = PostgresEventStore(postgres_url)
    try:
        five_events(store)
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [store.sql.conn.info.backend_pid])
        with pytest.raises(StoreError, match=r"^database postgresql://\S+: .*PostgreSQL runs"):
            store.info()
        assert store.info()["events"] == 5  # a new connection
        store.append([added("f.com", 9)], {"identity:f.com": 0})
        assert store.verify_chain() == (6, None)
    finally:
        store.close()


def test_a_writer_that_waits_too_long_is_told_so(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection, "LOCK_TIMEOUT", "200ms")
    store = PostgresEventStore(postgres_url)
    try:
        with psycopg.connect(postgres_url) as other:  # holds the writers' lock, uncommitted
            other.execute("SELECT pg_advisory_xact_lock(%s, %s)", [NAMESPACE, WRITERS])
            with pytest.raises(StoreError, match="another process holds the database; try"):
                store.append([added("a.com")], {})
        store.append([added("a.com")], {})  # let go: the next one goes through
        assert store.info()["events"] == 1
    finally:
        store.close()


def test_one_daemon_per_node_name(postgres_url: str) -> None:
    PostgresEventStore(postgres_url).close()  # the schema
    first = AdvisoryDaemonLock(postgres_url, "the-db", "mx1")
    first.acquire()
    try:
        assert first.holder() == (os.getpid(), socket.gethostname())
        second = AdvisoryDaemonLock(postgres_url, "the-db", "mx1")
        with pytest.raises(AlreadyRunning) as refused:
            second.acquire()
        host = socket.gethostname()
        assert str(refused.value) == (
            f"another rotator daemon (rotator daemon {os.getpid()}@{host}) is already running "
            "as node mx1 on the-db; stop it first, or give this one a [leadership] node name "
            "of its own"
        )
        other = AdvisoryDaemonLock(postgres_url, "the-db", "mx2")  # another node: its own
        other.acquire()
        other.release()
    finally:
        first.release()
    assert first.holder() is None
    again = AdvisoryDaemonLock(postgres_url, "the-db", "mx1")
    again.acquire()  # the server let go with the connection
    again.release()


def test_the_signer_lock_holds_across_nodes(postgres_url: str) -> None:
    """What an operator's emergency on one node and the leader's activation on another
    take before they write the signer targets: one at a time, a waiter told who holds it."""
    one, other = (
        AdvisorySignerLock(postgres_url, "the-db"),
        AdvisorySignerLock(postgres_url, "the-db"),
    )
    with one.hold(1.0):
        with pytest.raises(SignerLockBusy) as busy, other.hold(0.3):
            pass
        assert str(busy.value).startswith(
            f"the signer lock in the-db is held by rotator signer {os.getpid()}@"
        )
        assert str(busy.value).endswith("waited 0.3s: run the command again once it is done")
    with other.hold(1.0):  # let go with its connection
        pass


def test_a_later_leader_ends_a_former_leaders_hold_but_never_a_commands(
    postgres_url: str,
) -> None:
    """A leader paused while it holds the signer lock keeps it as long as it sleeps: the
    next leader (a later epoch) ends that session; an operator's command is waited for."""
    former, command = AdvisorySignerLock(postgres_url, "db"), AdvisorySignerLock(postgres_url, "db")
    former.epoch = lambda: 1
    later = AdvisorySignerLock(postgres_url, "db")
    later.epoch = lambda: 2
    with command.hold(1.0), pytest.raises(SignerLockBusy), later.hold(0.3):
        pass  # a command's hold: waited for, never ended
    same = AdvisorySignerLock(postgres_url, "db")
    same.epoch = lambda: 2
    # epoch 1 < 2: the former leader's session is ended; the same epoch is waited for
    with former.hold(1.0), later.hold(5.0), pytest.raises(SignerLockBusy), same.hold(0.3):
        pass


def test_a_read_only_connection_is_refused_writes_by_the_server(postgres_url: str) -> None:
    PostgresEventStore(postgres_url).close()
    reader = PostgresEventStore(postgres_url, readonly=True)
    try:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            reader.sql.execute("DELETE FROM keys")
    finally:
        reader.close()


def test_events_are_append_only(postgres_url: str) -> None:
    store = PostgresEventStore(postgres_url)
    try:
        five_events(store)
        for sql in ("UPDATE events SET reason = 'x'", "DELETE FROM events", "TRUNCATE events"):
            with (
                psycopg.connect(postgres_url) as conn,
                pytest.raises(psycopg.errors.RaiseException, match="events are append-only"),
            ):
                conn.execute(sql)
        assert store.verify_chain() == (5, None)
    finally:
        store.close()


def test_a_read_only_open_of_an_empty_database_says_what_to_do(postgres_url: str) -> None:
    with pytest.raises(Exception, match=r"create or upgrade it"):
        PostgresEventStore(postgres_url, readonly=True)
