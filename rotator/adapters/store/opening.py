"""The store the config names: SQLite for a path, PostgreSQL for a `postgresql://` URL;
whether its log was ever sealed (which decides how the audit key is loaded); the leader's
lease, the daemon's lock and the signer lock that go with it; and its errors told in one
line."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import psycopg

from ...config.database import Database
from ...ports import DaemonLock, EventStore, Leadership
from ..runtime.leadership import SoleLeadership
from ..runtime.lock import FlockDaemonLock
from . import sqlite
from .anchor import Anchor
from .errors import db_hint as sqlite_hint
from .postgres import store as postgres
from .postgres.connection import pg_hint
from .postgres.leadership import PgLeadership
from .postgres.locks import AdvisoryDaemonLock, AdvisorySignerLock
from .seal import Sealer

# what a database raises that is not one of rotator's own errors
DATABASE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)


def open_store(
    db: Database, readonly: bool = False, sealer: Sealer | None = None, anchor: Anchor | None = None
) -> EventStore:
    if db.url is not None:
        return postgres.open_postgres(db.url, readonly=readonly, sealer=sealer, anchor=anchor)
    assert db.path is not None
    return sqlite.open_store(db.path, readonly=readonly, sealer=sealer, anchor=anchor)


def open_leadership(db: Database, lease: float, renew: float) -> Leadership:
    """The lease in a PostgreSQL database (its connection opened when first used); with
    SQLite the one daemon always leads."""
    if db.url is None:
        return SoleLeadership()
    return PgLeadership(db.url, str(db), lease, renew)


def node_lock(db: Database, node: str) -> DaemonLock:
    """One daemon per database (SQLite: a flock beside the file), or per node name
    (PostgreSQL: which node works is the lease's business)."""
    if db.url is None:
        return FlockDaemonLock(db.files)
    return AdvisoryDaemonLock(db.url, str(db), node)


def shared_signer_lock(db: Database, epoch: Callable[[], int | None]) -> AdvisorySignerLock | None:
    """The signer lock across the nodes sharing a PostgreSQL database (None: one node);
    `epoch`: the lease this process's signer writes are leader work under, if any."""
    if db.url is None:
        return None
    lock = AdvisorySignerLock(db.url, str(db))
    lock.epoch = epoch
    return lock


def has_sealed_events(db: Database) -> bool:
    """Whether the log already depends on an audit key (read before the store is opened:
    the key decides how it is opened)."""
    if db.url is not None:
        return postgres.has_sealed_events(db.url)
    assert db.path is not None
    return sqlite.has_sealed_events(db.path)


def db_hint(exc: Exception, db: Database | None = None) -> str:
    """The database's message plus what an operator can do about it."""
    if isinstance(exc, psycopg.Error):
        return pg_hint(exc)
    assert isinstance(exc, sqlite3.Error)
    return sqlite_hint(exc, db.path if db is not None else None)
