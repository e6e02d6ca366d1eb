"""The one way events get into a store, whichever the database: the stream versions checked
(optimistic concurrency), each event folded into the key and identity states, chained to
the one before (sha256) and sealed (MAC), its row and the projection rows it changed fed
to the database, the projection's head sealed, all in one write transaction; the anchor
gets the log's head after the commit. Each adapter brings the transaction (taken so that
writers follow one another: positions and the chain are one total order) and the way rows
go in."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import operator
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import structlog

from ...domain import events as ev
from ...domain.errors import ConcurrencyError, IllegalTransition
from ...domain.events.base import not_before
from ...domain.model import IdentityState, KeyState, apply_identity, apply_key
from ...ports import Lease, StoredEvent
from ...timeutil import iso, parse_iso
from .anchor import Anchor, Writer
from .connection import Sql, amongs, rows_among
from .decoded import Decoded
from .json_text import payload_json, row_json
from .rows import GENESIS, Appended, identity_from_row, key_from_row, to_row
from .seal import Sealer

log = structlog.get_logger("rotator")

Row = tuple[Any, ...]

EVENT_COLUMNS = (
    "position", "stream_id", "version", "at", "type", "identity", "key_id", "domain",
    "selector", "actor", "reason", "payload", "prev_hash", "hash", "mac",
)  # fmt: skip
event_values = operator.itemgetter(*EVENT_COLUMNS)
PK = {"keys": "key_id", "identities": "identity"}


class Feed(Protocol):
    """Rows handed to the database as they are computed (see insert.Feed)."""

    def put(self, row: Row) -> None: ...

    def finish(self) -> None:
        """Every row is in; the first error of an insert is raised."""
        ...

    def abandon(self) -> None:
        """The caller failed: nothing more goes in (it rolls back next)."""
        ...


class StoreWrites:
    sql: Sql
    sealer: Sealer | None
    anchor: Anchor | None
    rebuild: Callable[..., list[str]]  # the audit's (declared only: no stub to shadow it)
    # the lease this store's appends are leader work under (None: an operator's command);
    # checked by a database that several nodes share (PostgresEventStore._write)
    fenced_by: Lease | None = None

    def fence(self, lease: Lease | None) -> None:
        self.fenced_by = lease

    def _write(self, lock: bool = True) -> contextlib.AbstractContextManager[None]:
        """A write transaction, writers one after another (lock=False: one read snapshot)."""
        raise NotImplementedError

    def _feed(self, table: str, columns: tuple[str, ...], total: int, pk: str | None) -> Feed:
        """Rows for `table` (upserted on `pk` if given), `total` of them to come."""
        raise NotImplementedError

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
            last = self.sql.execute(
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
            read = dict(idents)
            feed = self._feed("events", EVENT_COLUMNS, len(events), None)
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
                        feed.put(event_values(row))
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
            except self.sql.integrity_error as exc:
                raise ConcurrencyError(f"{exc}; retry") from exc
            # most key events leave their identity as it was (the fold returns the same
            # state): its row is not written again
            self._save(keys, {n: s for n, s in idents.items() if s is not read[n]})
            self._set_head(stored[-1].position, stored[-1].hash)
        return Appended(
            stored,
            {k: v for k, v in keys.items() if v is not None},
            {k: v for k, v in idents.items() if v is not None},
        )

    def _stream_versions(self, streams: set[str]) -> dict[str, int]:
        versions = dict.fromkeys(streams, 0)
        for among, params in amongs(self.sql, "stream_id", streams):
            for stream, version in self.sql.execute(
                f"SELECT stream_id, MAX(version) FROM events WHERE {among} GROUP BY stream_id",
                params,
            ):
                versions[stream] = int(version)
        return versions

    def _prefetch(self, table: str, pk: str, names: set[str]) -> dict[str, Any]:
        found: dict[str, Any] = dict.fromkeys(names)
        for row in rows_among(self.sql, table, pk, names):
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
        # rows sealed here while the ones before go into the database
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
                        self._decoded[table].put(row, state)
                        if feed is None:
                            feed = self._feed(table, tuple(row), len(states), pk)
                            feeds.append(feed)
                        feed.put(tuple(row.values()))
                for feed in feeds:
                    feed.finish()
            except BaseException:
                for feed in feeds:
                    feed.abandon()
                raise
        except self.sql.integrity_error as exc:
            if "selector" in str(exc):
                raise IllegalTransition(f"selector already used for this domain: {exc}") from exc
            raise

    def _sealed(self, table: str, row: dict[str, Any]) -> dict[str, Any]:
        row["mac"] = self.sealer.row(table, row) if self.sealer else None
        return row

    def _set_head(self, position: int, event_hash: str) -> None:
        mac = self.sealer.head(position, event_hash) if self.sealer else None
        self.sql.execute(
            "INSERT INTO projection_head (id, position, mac) VALUES (1, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET position = excluded.position, mac = excluded.mac",
            [position, mac],
        )

    def _seal_at_open(self, upgraded: bool) -> None:
        """First open with the audit key, or a schema upgrade (a new column changes every
        row a MAC covers): seal the projection by replaying the log into it, if the log
        itself holds (rebuild checks it first)."""
        if self.sealer is not None and (upgraded or self._unsealed()):
            self.rebuild()

    def _unsealed(self) -> bool:
        row = self.sql.execute(
            "SELECT NOT EXISTS (SELECT 1 FROM projection_head) AND "
            "EXISTS (SELECT 1 FROM events) "
            "OR EXISTS (SELECT 1 FROM keys WHERE mac IS NULL) "
            "OR EXISTS (SELECT 1 FROM identities WHERE mac IS NULL) "
            "OR EXISTS (SELECT 1 FROM projection_head WHERE mac IS NULL)"
        ).fetchone()
        return bool(row[0])

    @functools.cached_property
    def _decoded(self) -> dict[str, Decoded[Any]]:
        return {"keys": Decoded(KeyState), "identities": Decoded(IdentityState)}

    def _key(self, row: dict[str, Any], check: bool = True) -> KeyState:
        return self._state("keys", row, check, key_from_row)  # type: ignore[no-any-return]

    def _ident(self, row: dict[str, Any], check: bool = True) -> IdentityState:
        state = self._state("identities", row, check, identity_from_row)
        return state  # type: ignore[no-any-return]

    def _state(
        self, table: str, row: dict[str, Any], check: bool, decode: Callable[[Any], Any]
    ) -> Any:
        """A row's state, its MAC checked (unless `check` is off); a row whose MAC was seen
        before is that state again (decoded.py)."""
        if not check or self.sealer is None:
            row.pop("mac", None)
            return decode(row)
        cache = self._decoded[table]
        state = cache.get(row)
        if state is None:
            self.sealer.check_row(table, row, row[PK[table]])
            state = decode({k: v for k, v in row.items() if k != "mac"})
            cache.put(row, state)
        return state
