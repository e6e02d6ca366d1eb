"""`rotator db migrate --to postgresql://...`: an SQLite installation's log moved into an
empty PostgreSQL database as it is. Every event keeps its position, hash and MAC (the rows
are copied, not appended again), so the chain, the audit key and the anchor's lines hold
for the new database exactly as for the old one; the projection is then replayed from the
copied log (which checks it first, as `db rebuild` does), and the whole is audited. The
SQLite file is only read: it stays as it was, to go back to."""

from __future__ import annotations

from dataclasses import dataclass

from ....domain.errors import RotatorError, StoreError
from ..anchor import Anchor
from ..append import EVENT_COLUMNS
from ..seal import Sealer
from ..sqlite import SqliteEventStore
from .store import CopyFeed, PostgresEventStore, open_postgres


@dataclass(frozen=True)
class Migrated:
    events: int
    head: tuple[int, str] | None  # the audit head, the same on both
    keys: int
    identities: int
    sealed: int  # events carrying a MAC


def migrate(
    source: SqliteEventStore, url: str, sealer: Sealer | None, anchor: Anchor | None
) -> Migrated:
    target = open_postgres(url, sealer=sealer, anchor=anchor)
    try:
        _copy(source, target)
        target.rebuild()  # checks the copied log (chain, MACs, anchor) before it folds it
        report = target.audit()
        if not report.ok:
            raise StoreError(f"the copy in {target.where} does not audit clean: {report}")
        head = target.head()
        if head != source.head():
            raise StoreError(f"{target.where} ends at {head}, the SQLite log at {source.head()}")
        return Migrated(
            report.events, head, len(target.list_keys()), len(target.identities()), report.sealed
        )
    finally:
        target.close()


def _copy(source: SqliteEventStore, target: PostgresEventStore) -> None:
    """Every event row, in position order, from one snapshot of the SQLite file (checked
    first, as a rebuild checks it) into the target under its writers' lock, in one
    transaction: all of them or none."""
    names = ", ".join(EVENT_COLUMNS)
    with target._write(), source.sql.reading():
        _refuse_unless_empty(target)
        # a log that could not be rebuilt where it is is not moved either
        problem = source.log_problem()
        if problem is not None:
            raise StoreError(f"refusing to migrate {source.sql.where}: {problem}")
        feed = CopyFeed(target.sql, "events", EVENT_COLUMNS)
        try:
            for row in source.sql.stream(f"SELECT {names} FROM events ORDER BY position"):
                feed.put(tuple(row))
            feed.finish()
        except BaseException:
            feed.abandon()
            raise


def _refuse_unless_empty(target: PostgresEventStore) -> None:
    events = target.sql.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    if events:
        raise RotatorError(
            f"database {target.where} already holds {events} events: migrate only into an "
            "empty database"
        )
    for table in ("keys", "identities", "projection_head"):
        if target.sql.execute(f"SELECT EXISTS (SELECT 1 FROM {table})").fetchone()[0]:
            raise RotatorError(
                f"database {target.where} has rows in its {table} table: migrate only into "
                "an empty database"
            )
