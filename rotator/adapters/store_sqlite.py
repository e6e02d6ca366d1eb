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
import json
import os
import sqlite3
from collections.abc import Collection, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from ..domain import events as ev
from ..domain.errors import ConcurrencyError, IllegalTransition, RotatorError, StoreError
from ..domain.model import IdentityState, KeyState, apply_identity, apply_key
from ..domain.states import State
from ..ports import LogFilter, StoredEvent
from ..timeutil import iso, parse_iso
from . import store_audit
from .store_rows import (
    GENESIS,
    Appended,
    event_from_row,
    event_hash,
    identity_from_row,
    key_from_row,
    to_row,
)
from .store_schema import migrations

__all__ = ["GENESIS", "Appended", "SqliteEventStore", "db_hint", "event_hash", "open_store"]

BUSY_TIMEOUT_MS = 10_000


class SqliteEventStore:
    def __init__(self, path: Path | str, readonly: bool = False) -> None:
        """`readonly`: open with SQLite's mode=ro and write nothing at all (no directory,
        no WAL switch, no migration), for the commands that only read."""
        self.path = Path(path)
        self.readonly = readonly
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
        migrations.apply(self.db)

    def close(self) -> None:
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
        stored: list[StoredEvent] = []
        with self._write():
            last = self.db.execute(
                "SELECT hash FROM events ORDER BY position DESC LIMIT 1"
            ).fetchone()
            prev_hash = last[0] if last else GENESIS
            versions: dict[str, int] = {}
            keys: dict[str, KeyState | None] = {}
            idents: dict[str, IdentityState | None] = {}
            for event in events:
                stream = event.stream_id
                if stream not in versions:
                    current = self.stream_version(stream)
                    want = expected.get(stream)
                    if want is not None and want != current:
                        raise ConcurrencyError(
                            f"{stream} is at version {current}, expected {want}; "
                            "someone else changed it first, retry"
                        )
                    versions[stream] = current
                versions[stream] += 1
                self._fold(event, keys, idents)
                row = self._row(event, stream, versions[stream], prev_hash)
                try:
                    pos = self.db.execute(
                        "INSERT INTO events (stream_id, version, at, type, identity, key_id, "
                        "domain, selector, actor, reason, payload, prev_hash, hash) VALUES "
                        "(:stream_id, :version, :at, :type, :identity, :key_id, :domain, "
                        ":selector, :actor, :reason, :payload, :prev_hash, :hash)",
                        row,
                    ).lastrowid
                except sqlite3.IntegrityError as exc:
                    raise ConcurrencyError(f"{stream}: {exc}; retry") from exc
                prev_hash = row["hash"]
                stored.append(
                    StoredEvent(
                        int(pos or 0),
                        stream,
                        versions[stream],
                        event,
                        row["hash"],
                        row["prev_hash"],
                    )
                )
            self._save(keys, idents)
        return Appended(
            stored,
            {k: v for k, v in keys.items() if v is not None},
            {k: v for k, v in idents.items() if v is not None},
        )

    def _row(self, event: ev.Event, stream: str, version: int, prev_hash: str) -> dict[str, Any]:
        # The position is not part of the hash input (it is assigned on insert); the chain
        # itself orders events, and a reorder breaks prev_hash links.
        row: dict[str, Any] = {
            "stream_id": stream,
            "version": version,
            "at": iso(event.at),
            "type": type(event).__name__,
            "identity": getattr(event, "identity", None),
            "key_id": getattr(event, "key_id", None),
            "domain": getattr(event, "domain", None),
            "selector": getattr(event, "selector", None),
            "actor": event.actor,
            "reason": event.reason,
            "payload": json.dumps(event.payload(), sort_keys=True, separators=(",", ":")),
            "prev_hash": prev_hash,
        }
        row["hash"] = event_hash(row)
        return row

    def _fold(
        self,
        event: ev.Event,
        keys: dict[str, KeyState | None],
        idents: dict[str, IdentityState | None],
    ) -> None:
        if isinstance(event, ev.KeyEvent):
            if event.key_id not in keys:
                keys[event.key_id] = self.key(event.key_id)
            keys[event.key_id] = apply_key(keys[event.key_id], event)
        name = getattr(event, "identity", None)
        if name is not None:
            if name not in idents:
                idents[name] = self.identity(name)
            idents[name] = apply_identity(idents[name], event)

    def _save(
        self, keys: dict[str, KeyState | None], idents: dict[str, IdentityState | None]
    ) -> None:
        key_rows = [to_row(k) for k in keys.values() if k is not None]
        ident_rows = [to_row(i) for i in idents.values() if i is not None]
        try:
            if key_rows:
                self.db.table("keys").upsert_all(key_rows, pk="key_id")
            if ident_rows:
                self.db.table("identities").upsert_all(ident_rows, pk="identity")
        except sqlite3.IntegrityError as exc:
            if "selector" in str(exc):
                raise IllegalTransition(f"selector already used for this domain: {exc}") from exc
            raise

    # --- reads -------------------------------------------------------------------------

    def stream_version(self, stream_id: str) -> int:
        row = self.db.execute(
            "SELECT MAX(version) FROM events WHERE stream_id = ?", [stream_id]
        ).fetchone()
        return int(row[0] or 0)

    def key(self, key_id: str) -> KeyState | None:
        rows = list(self.db.query("SELECT * FROM keys WHERE key_id = ?", [key_id]))
        return key_from_row(rows[0]) if rows else None

    def list_keys(self, identity: str | None = None, state: State | None = None) -> list[KeyState]:
        where, params = [], []
        if identity is not None:
            where.append("identity = ?")
            params.append(identity)
        if state is not None:
            where.append("state = ?")
            params.append(state.value)
        sql = "SELECT * FROM keys"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self.db.query(sql + " ORDER BY domain, created_at", params)
        return [key_from_row(r) for r in rows]

    def due_keys(self, now: datetime, limit: int = 1000) -> list[KeyState]:
        rows = self.db.query(
            "SELECT * FROM keys WHERE next_action_at IS NOT NULL AND next_action_at <= ? "
            "ORDER BY next_action_at LIMIT ?",
            [iso(now), limit],
        )
        return [key_from_row(r) for r in rows]

    def next_due(self, skip: Collection[str] = ()) -> datetime | None:
        """Earliest pending action time over keys and identities (for the scheduler),
        ignoring the keys in `skip` (the caller already knows when to look at them)."""
        idents = self.db.execute(
            "SELECT MIN(rotation_due_at) FROM identities WHERE rotation_due_at IS NOT NULL"
        ).fetchone()[0]
        # walk the partial index from the earliest; at most len(skip) rows are passed over
        rows = self.db.execute(
            "SELECT key_id, next_action_at FROM keys WHERE next_action_at IS NOT NULL "
            "ORDER BY next_action_at LIMIT ?",
            [len(skip) + 1],
        )
        keys = next((at for key_id, at in rows if key_id not in skip), None)
        times = [t for t in (idents, keys) if t]
        return parse_iso(min(times)) if times else None

    def identity(self, identity: str) -> IdentityState | None:
        rows = list(self.db.query("SELECT * FROM identities WHERE identity = ?", [identity]))
        return identity_from_row(rows[0]) if rows else None

    def identity_sending(self, domain: str) -> IdentityState | None:
        """The identity that signs `domain`'s mail, if any."""
        rows = list(
            self.db.query(
                "SELECT * FROM identities WHERE sending_domain = ? ORDER BY identity LIMIT 1",
                [domain],
            )
        )
        return identity_from_row(rows[0]) if rows else None

    def identities(self) -> list[IdentityState]:
        return [
            identity_from_row(r)
            for r in self.db.query("SELECT * FROM identities ORDER BY identity")
        ]

    def due_identities(self, now: datetime, limit: int = 1000) -> list[IdentityState]:
        rows = self.db.query(
            "SELECT * FROM identities WHERE rotation_due_at IS NOT NULL "
            "AND rotation_due_at <= ? ORDER BY rotation_due_at LIMIT ?",
            [iso(now), limit],
        )
        return [identity_from_row(r) for r in rows]

    def selectors(self, domain: str) -> set[str]:
        return {
            r["selector"]
            for r in self.db.query("SELECT selector FROM keys WHERE domain = ?", [domain])
        }

    def events(self, flt: LogFilter | None = None) -> Iterator[StoredEvent]:
        flt = flt or LogFilter()
        where = ["position > :after"]
        params: dict[str, Any] = {"after": flt.after_position}
        for col in ("identity", "domain", "selector", "key_id", "actor"):
            value = getattr(flt, col)
            if value is not None:
                where.append(f"{col} = :{col}")
                params[col] = value
        if flt.identities:
            names = []
            for i, ident in enumerate(flt.identities):
                params[f"i{i}"] = ident
                names.append(f":i{i}")
            where.append(f"identity IN ({', '.join(names)})")
        if flt.types:
            names = []
            for i, t in enumerate(flt.types):
                params[f"t{i}"] = t
                names.append(f":t{i}")
            where.append(f"type IN ({', '.join(names)})")
        if flt.since is not None:
            where.append("at >= :since")
            params["since"] = iso(flt.since)
        if flt.until is not None:
            where.append("at <= :until")
            params["until"] = iso(flt.until)
        sql = f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY position"
        if flt.limit is not None:
            sql += f" LIMIT {int(flt.limit)}"
        for row in self.db.query(sql, params):
            yield event_from_row(row)

    def info(self) -> dict[str, Any]:
        count = self.db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        return {"path": str(self.path), "events": count}

    # --- audit and rebuild ---------------------------------------------------------------

    def verify_chain(self) -> tuple[int, str | None]:
        """Recompute the hash chain. Returns (events checked, first problem or None)."""
        return store_audit.verify_chain(self.db.query("SELECT * FROM events ORDER BY position"))

    def replay(self) -> tuple[dict[str, KeyState], dict[str, IdentityState]]:
        """Fold every event from scratch (in memory)."""
        return store_audit.replay(self.events())

    def rebuild(self, check_only: bool = False) -> list[str]:
        """Rebuild the projections from the log. Returns the differences found between the
        live projection and the replayed one; unless check_only, replaces the live one."""
        with self._write(lock=not check_only):
            keys, idents = self.replay()
            diffs = store_audit.diff("key", {k.key_id: k for k in self.list_keys()}, keys)
            diffs += store_audit.diff(
                "identity", {i.identity: i for i in self.identities()}, idents
            )
            if not check_only:
                self.db.execute("DELETE FROM keys")
                self.db.execute("DELETE FROM identities")
                self._save(dict(keys.items()), dict(idents.items()))
        return diffs


def open_store(path: Path | str, readonly: bool = False) -> SqliteEventStore:
    try:
        return SqliteEventStore(path, readonly=readonly)
    except sqlite3.Error as exc:
        raise RotatorError(f"cannot open database {path}: {db_hint(exc, Path(path))}") from None
    except OSError as exc:
        raise RotatorError(
            f"cannot open database {path}: {exc.strerror}; check that this user owns "
            f"{Path(path).parent}"
        ) from None


def read_only_fs(path: Path) -> bool:
    """True if `path` (or, when it does not exist, its directory) is on a read-only mount."""
    try:
        return bool(os.statvfs(path if path.exists() else path.parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def db_hint(exc: sqlite3.Error, path: Path | None = None) -> str:
    """SQLite's message plus what an operator can do about it."""
    text = str(exc)
    if (
        path is not None
        and read_only_fs(path.parent)
        and ("readonly" in text or "read-only" in text)
    ):
        return f"{text}: the filesystem holding {path.parent} is mounted read-only"
    if "readonly" in text or "read-only" in text:
        return (
            f"{text}: the database is read-only for this user; run rotator as the user that "
            "owns it (e.g. `sudo -u rotator rotator ...`) or fix the file's permissions"
        )
    if "unable to open" in text:
        return f"{text}: check that the file and its directory exist and this user may read them"
    if "locked" in text or "busy" in text:
        return f"{text}: another process holds the database; try again"
    if "malformed" in text or "not a database" in text:
        return f"{text}: the file is damaged or not a rotator database; restore it from a backup"
    return text
