"""Event store on SQLite (sqlite-utils): an append-only, hash-chained event log plus the
key and identity projections, updated in the same transaction as the append.

- events: global position, (stream_id, version) UNIQUE for optimistic concurrency,
  UTC timestamp, type, query columns, JSON payload, actor, reason, prev_hash, hash.
- UPDATE/DELETE on events is refused by triggers (append-only).
- WAL mode, busy timeout, secure_delete; BEGIN IMMEDIATE for writers so that a concurrent
  writer waits instead of failing on a lock upgrade.
"""

from __future__ import annotations

import contextlib
import hashlib
import operator
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlite_utils
import structlog

from ...domain import events as ev
from ...domain.errors import ConcurrencyError, IllegalTransition, RotatorError, StoreError
from ...domain.events.base import not_before
from ...domain.model import IdentityState, KeyState, apply_identity, apply_key
from ...ports import StoredEvent
from ...timeutil import iso, parse_iso
from .anchor import Anchor, Writer
from .audit import StoreAudit
from .errors import db_hint
from .insert import Feed, Inserter, upsert
from .json_text import payload_json, row_json
from .overview import OverviewReads
from .queries import StoreReads
from .rows import (
    GENESIS,
    Appended,
    event_hash,
    identity_from_row,
    key_from_row,
    to_row,
)
from .schema import changes_rows, migrations
from .seal import Sealer

__all__ = ["GENESIS", "Appended", "SqliteEventStore", "db_hint", "event_hash", "open_store"]

BUSY_TIMEOUT_MS = 10_000
log = structlog.get_logger("rotator")


class SqliteEventStore(StoreReads, OverviewReads, StoreAudit):
    def __init__(
        self,
        path: Path | str,
        readonly: bool = False,
        sealer: Sealer | None = None,
        anchor: Anchor | None = None,
    ) -> None:
        """`readonly`: open with SQLite's mode=ro and write nothing at all (no directory,
        no WAL switch, no migration), for the commands that only read. `sealer` (the audit
        key) MACs what is written and checks every projection row read; `anchor` gets the
        log's head after every transaction (store_seal.py)."""
        self.path = Path(path)
        self.readonly = readonly
        self.sealer = sealer
        self.anchor = anchor
        if readonly:
            if not self.path.is_file():
                raise RotatorError(
                    f"database {self.path} does not exist; create it with `rotator init`"
                )
            conn = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro",
                uri=True,
                timeout=BUSY_TIMEOUT_MS / 1000,
                check_same_thread=False,
            )
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
            )
        self.db = sqlite_utils.Database(conn)
        self._inserter = Inserter(conn)
        self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if readonly:
            if migrations.pending(self.db):
                raise RotatorError(
                    f"database {self.path} is not at this rotator's schema version; run a "
                    "writing command (e.g. `rotator init`) as its owner to upgrade it"
                )
            return
        self.db.execute("PRAGMA secure_delete = ON")
        self.db.execute("PRAGMA foreign_keys = ON")
        if self.db.journal_mode != "wal":
            self.db.enable_wal()
        self.db.execute("PRAGMA synchronous = FULL")
        upgraded = changes_rows(self.db) and self.db["events"].exists()
        migrations.apply(self.db)
        if sealer is not None and (upgraded or self._unsealed()):
            # First open with the audit key, or a schema upgrade (a new column changes
            # every row a MAC covers): seal the projection by replaying the log into it,
            # if the log itself holds (rebuild checks it first).
            try:
                self.rebuild()
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        self._inserter.close()
        self.db.close()

    @contextlib.contextmanager
    def _write(self, lock: bool = True) -> Iterator[None]:
        # IMMEDIATE takes the write lock up front: the fold below reads projections that
        # must not change before we commit. Without `lock`, one consistent read snapshot.
        # SQLite's own errors (read-only file, disk full, locked too long) become one
        # StoreError naming the file, so that callers handle them like any other failure.
        if self.readonly and lock:
            raise StoreError(f"database {self.path} was opened read-only")
        try:
            self.db.conn.execute("BEGIN IMMEDIATE" if lock else "BEGIN DEFERRED")
        except sqlite3.Error as exc:
            raise StoreError(f"database {self.path}: {db_hint(exc, self.path)}") from None
        try:
            yield
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                self.db.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"database {self.path}: {db_hint(exc, self.path)}") from None
            raise
        try:
            self.db.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self.db.conn.execute("ROLLBACK")
            raise StoreError(f"database {self.path}: {db_hint(exc, self.path)}") from None

    # --- writes ------------------------------------------------------------------------

    def append(self, events: Sequence[ev.Event], expected: dict[str, int]) -> Appended:
        if not events:
            return Appended([], {}, {})
        with self._anchored() as anchor:
            appended = self._append(events, expected)
            if anchor is not None:
                last = appended[-1]
                try:
                    anchor.append(last.position, last.hash)
                except OSError as exc:  # committed: kept, and written by the next append
                    log.error("anchor_write_failed", anchor=str(anchor.anchor.path),
                              position=last.position, error=exc.strerror)  # fmt: skip
        return appended

    def _anchored(self) -> contextlib.AbstractContextManager[Writer | None]:
        # taken before the database's write lock and held across the commit, so that the
        # anchor's lines are in commit order
        if self.anchor is None:
            return contextlib.nullcontext()
        return self.anchor.locked(self.sealer)

    def _append(self, events: Sequence[ev.Event], expected: dict[str, int]) -> Appended:
        stored: list[StoredEvent] = []
        with self._write():
            last = self.db.execute(
                "SELECT position, hash, at FROM events ORDER BY position DESC LIMIT 1"
            ).fetchone()
            position, prev_hash = (int(last[0]), str(last[1])) if last else (0, GENESIS)
            # No event is older than the one recorded before it, whichever process (and
            # clock) recorded that; the recorder keeps a batch itself in order.
            floor = parse_iso(str(last[2])) if last else None
            events = not_before(events, floor, running=False)
            # One query each for the streams' versions and the states the fold starts
            # from: a batch of thousands of events must not cost thousands of SELECTs.
            versions = self._stream_versions({e.stream_id for e in events})
            for stream, want in expected.items():
                current = versions.get(stream)
                if current is not None and want != current:
                    raise ConcurrencyError(
                        f"{stream} is at version {current}, expected {want}; "
                        "someone else changed it first, retry"
                    )
            keys: dict[str, KeyState | None] = self._prefetch(
                "keys", "key_id", {e.key_id for e in events if isinstance(e, ev.KeyEvent)}
            )
            names = {n for e in events if (n := getattr(e, "identity", None)) is not None}
            idents: dict[str, IdentityState | None] = self._prefetch(
                "identities", "identity", names
            )
            feed = self._inserter.feed("INSERT INTO events", _EVENT_COLUMNS, len(events))
            try:
                try:
                    for event in events:
                        stream = event.stream_id
                        versions[stream] += 1
                        self._fold(event, keys, idents)
                        position += 1
                        row = self._row(event, stream, versions[stream], prev_hash)
                        row["position"] = position
                        row["mac"] = self.sealer.event(row["hash"]) if self.sealer else None
                        feed.put(_event_values(row))
                        prev_hash = row["hash"]
                        stored.append(
                            StoredEvent(
                                position, stream, versions[stream], event, row["hash"],
                                row["prev_hash"],
                            )
                        )  # fmt: skip
                    feed.finish()
                except BaseException:
                    feed.abandon()
                    raise
            except sqlite3.IntegrityError as exc:
                raise ConcurrencyError(f"{exc}; retry") from exc
            self._save(keys, idents)
            self._set_head(stored[-1].position, stored[-1].hash)
        return Appended(
            stored,
            {k: v for k, v in keys.items() if v is not None},
            {k: v for k, v in idents.items() if v is not None},
        )

    def _stream_versions(self, streams: set[str]) -> dict[str, int]:
        versions = dict.fromkeys(streams, 0)
        for chunk in _chunks(sorted(streams)):
            marks = ",".join("?" * len(chunk))
            for stream, version in self.db.execute(
                f"SELECT stream_id, MAX(version) FROM events WHERE stream_id IN ({marks}) "
                "GROUP BY stream_id",
                chunk,
            ):
                versions[stream] = int(version)
        return versions

    def _prefetch(self, table: str, pk: str, names: set[str]) -> dict[str, Any]:
        found: dict[str, Any] = dict.fromkeys(names)
        for chunk in _chunks(sorted(names)):
            marks = ",".join("?" * len(chunk))
            for row in self.db.query(f"SELECT * FROM {table} WHERE {pk} IN ({marks})", chunk):
                found[row[pk]] = self._key(row) if table == "keys" else self._ident(row)
        return found

    def _row(self, event: ev.Event, stream: str, version: int, prev_hash: str) -> dict[str, Any]:
        # The position is not part of the hash input (it is assigned on insert); the chain
        # itself orders events, and a reorder breaks prev_hash links.
        # store_rows.event_hash stays the definition; store_json writes the same text
        # directly (the tests hold the two equal)
        at, payload = iso(event.at), payload_json(event)
        domain, identity = getattr(event, "domain", None), getattr(event, "identity", None)
        key_id, selector = getattr(event, "key_id", None), getattr(event, "selector", None)
        kind = type(event).__name__
        text = row_json(
            event.actor, at, domain, identity, key_id, payload, prev_hash, event.reason,
            selector, stream, kind, version,
        )  # fmt: skip
        return {
            "stream_id": stream, "version": version, "at": at, "type": kind,
            "identity": identity, "key_id": key_id, "domain": domain, "selector": selector,
            "actor": event.actor, "reason": event.reason, "payload": payload,
            "prev_hash": prev_hash, "hash": hashlib.sha256(text.encode()).hexdigest(),
        }  # fmt: skip

    def _fold(
        self,
        event: ev.Event,
        keys: dict[str, KeyState | None],
        idents: dict[str, IdentityState | None],
    ) -> None:
        # every stream was prefetched by append()
        if isinstance(event, ev.KeyEvent):
            keys[event.key_id] = apply_key(keys[event.key_id], event)
        name = getattr(event, "identity", None)
        if name is not None:
            idents[name] = apply_identity(idents[name], event)

    def _save(
        self, keys: dict[str, KeyState | None], idents: dict[str, IdentityState | None]
    ) -> None:
        # rows sealed here while the ones before go into SQLite on the helper thread
        feeds: list[Feed] = []
        try:
            try:
                for table, pk, states in (
                    ("keys", "key_id", keys),
                    ("identities", "identity", idents),
                ):
                    feed = None
                    for state in states.values():
                        if state is None:
                            continue
                        row = self._sealed(table, to_row(state))
                        if feed is None:
                            columns = tuple(row)
                            into = f"INSERT INTO {table}"
                            feed = self._inserter.feed(
                                into, columns, len(states), upsert(pk, columns)
                            )
                            feeds.append(feed)
                        feed.put(tuple(row.values()))
                for feed in feeds:
                    feed.finish()
            except BaseException:
                for feed in feeds:
                    feed.abandon()
                raise
        except sqlite3.IntegrityError as exc:
            if "selector" in str(exc):
                raise IllegalTransition(f"selector already used for this domain: {exc}") from exc
            raise

    def _sealed(self, table: str, row: dict[str, Any]) -> dict[str, Any]:
        row["mac"] = self.sealer.row(table, row) if self.sealer else None
        return row

    def _set_head(self, position: int, event_hash: str) -> None:
        mac = self.sealer.head(position, event_hash) if self.sealer else None
        self.db.execute(
            "INSERT INTO projection_head (id, position, mac) VALUES (1, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET position = excluded.position, mac = excluded.mac",
            [position, mac],
        )

    def _unsealed(self) -> bool:
        row = self.db.execute(
            "SELECT (SELECT COUNT(*) FROM projection_head) = 0 AND "
            "(SELECT COUNT(*) FROM events) > 0 "
            "OR EXISTS (SELECT 1 FROM keys WHERE mac IS NULL) "
            "OR EXISTS (SELECT 1 FROM identities WHERE mac IS NULL) "
            "OR EXISTS (SELECT 1 FROM projection_head WHERE mac IS NULL)"
        ).fetchone()
        return bool(row[0])

    def _key(self, row: dict[str, Any], check: bool = True) -> KeyState:
        if check and self.sealer is not None:
            self.sealer.check_row("keys", row, row["key_id"])
        row.pop("mac", None)
        return key_from_row(row)

    def _ident(self, row: dict[str, Any], check: bool = True) -> IdentityState:
        if check and self.sealer is not None:
            self.sealer.check_row("identities", row, row["identity"])
        row.pop("mac", None)
        return identity_from_row(row)


_EVENT_COLUMNS = (
    "position", "stream_id", "version", "at", "type", "identity", "key_id", "domain",
    "selector", "actor", "reason", "payload", "prev_hash", "hash", "mac",
)  # fmt: skip
_event_values = operator.itemgetter(*_EVENT_COLUMNS)
_CHUNK = 500  # bound parameters per IN (...) query, well under SQLite's limit


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def open_store(
    path: Path | str,
    readonly: bool = False,
    sealer: Sealer | None = None,
    anchor: Anchor | None = None,
) -> SqliteEventStore:
    try:
        return SqliteEventStore(path, readonly=readonly, sealer=sealer, anchor=anchor)
    except sqlite3.Error as exc:
        raise RotatorError(f"cannot open database {path}: {db_hint(exc, Path(path))}") from None
    except OSError as exc:
        raise RotatorError(
            f"cannot open database {path}: {exc.strerror}; check that this user owns "
            f"{Path(path).parent}"
        ) from None


def has_sealed_events(path: Path) -> bool:
    """Whether the log at `path` already depends on an audit key (read without opening
    the store: the key decides how it is opened)."""
    if not path.is_file():
        return False
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        row = conn.execute(
            "SELECT 1 FROM events WHERE mac IS NOT NULL "
            "UNION ALL SELECT 1 FROM projection_head WHERE mac IS NOT NULL LIMIT 1"
        ).fetchone()
    except sqlite3.Error:  # no events table yet, or no mac column: nothing sealed
        return False
    finally:
        conn.close()
    return row is not None
