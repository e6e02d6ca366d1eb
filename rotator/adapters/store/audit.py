"""Checking the log against itself and against what is kept outside it: the hash chain,
the MACs of events and projection rows (audit key), the anchor's last entry (a cut-off
tail), and the projections replayed from scratch compared with the live ones: each in
passes over the database whose memory does not grow with the log. The chain and the MACs
are checked over raw tuples in one scan, event_hash and the Sealer staying their
definitions (the tests hold them equal); the replay is store_replay.py's."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...domain.errors import StoreError
from ...domain.model import IdentityState, KeyState
from ...ports.store import AuditReport
from .anchor import Anchor, AnchorCheck, check_anchor, tail_problem
from .connection import Cursor, Sql
from .replay import (
    batched,
    identity_states,
    key_states,
    merge_join,
    row_matcher,
    stream_sql,
)
from .rows import GENESIS
from .seal import Sealer

__all__ = ["AuditReport", "ChainResult", "StoreAudit", "check_log", "diff_one"]

# --- the hash chain -----------------------------------------------------------------------

# json.dumps(body, sort_keys=True, separators=(",", ":")) in event_hash builds this encoder
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


@dataclass
class ChainResult:
    events: int = 0  # events checked up to and including the first break
    problem: str | None = None
    sealed: int = 0
    bad_macs: list[str] = field(default_factory=list)
    last_sealed: bool = False  # the last event carries a valid MAC


def check_log(
    cursor: Cursor,
    event_mac: Callable[[str], str] | None,
    sealed_from: int | None = None,
) -> ChainResult:
    """Walk `SELECT * FROM events ORDER BY position`: the chain up to its first break and,
    with `event_mac`, the MAC of every sealed event (past a break too), and a MAC missing
    from an event after a sealed one, or from `sealed_from` on (where the anchor shows the
    log sealed). Without `event_mac`, stops at the break."""
    unsealed_from = sealed_from if sealed_from is not None else float("inf")
    columns = [d[0] for d in cursor.description]
    pos_i, prev_i, hash_i = (columns.index(c) for c in ("position", "prev_hash", "hash"))
    mac_i = columns.index("mac") if "mac" in columns else None
    # what event_hash hashes: every column but position, its own hash and its MAC
    names = tuple(sorted(c for c in columns if c not in ("position", "hash", "mac")))
    body = operator.itemgetter(*(columns.index(c) for c in names))
    sha256, encode = hashlib.sha256, _CANONICAL.encode
    out = ChainResult()
    prev, expected = GENESIS, 1
    row: Any = None
    for row in cursor:
        if out.problem is None:
            out.events += 1
            pos = row[pos_i]
            if pos != expected:
                out.problem = f"event at position {expected} is missing (next is {pos})"
            elif row[prev_i] != prev:
                out.problem = f"event {pos}: prev_hash does not link to event {pos - 1}"
            elif (
                sha256(encode(dict(zip(names, body(row), strict=True))).encode()).hexdigest()
                != row[hash_i]
            ):
                out.problem = f"event {pos}: content does not match its hash (edited)"
            else:
                prev = row[hash_i]
                expected += 1
            if out.problem is not None and event_mac is None:
                break
        if event_mac is not None and mac_i is not None:
            if row[mac_i] is not None:
                out.sealed += 1
                if not hmac.compare_digest(row[mac_i], event_mac(row[hash_i])):
                    out.bad_macs.append(f"event {row[pos_i]}: MAC does not match (rewritten)")
            elif out.sealed or row[pos_i] >= unsealed_from:
                # events before the audit key existed carry none; after the first sealed
                # one, every event is sealed as it is appended: a missing MAC was removed
                out.bad_macs.append(f"event {row[pos_i]}: MAC removed (after sealed events)")
    if event_mac is not None and mac_i is not None and row is not None:
        mac = row[mac_i]
        out.last_sealed = mac is not None and hmac.compare_digest(mac, event_mac(row[hash_i]))
    return out


_BATCH = 1000  # replayed rows written per upsert by a rebuild


def diff_one(kind: str, name: str, live: Any, rebuilt: Any) -> list[str]:
    """One line per field that differs between a live state and a replayed one."""
    return [
        f"{kind} {name}: {f.name} live={getattr(live, f.name)!r} "
        f"rebuilt={getattr(rebuilt, f.name)!r}"
        for f in dataclasses.fields(live)
        if getattr(live, f.name) != getattr(rebuilt, f.name)
    ]


class _Table:
    """A projection table's live rows, read as tuples and checked against replayed states."""

    def __init__(self, store: StoreAudit, table: str, seal: Sealer | None) -> None:
        self.sql = sql = store.sql
        self.decode: Callable[..., Any]
        self.kind, self.pk, cls, self.decode = (
            ("key", "key_id", KeyState, store._key)
            if table == "keys"
            else ("identity", "identity", IdentityState, store._ident)
        )
        self.select = f"SELECT {sql.row_order(self.pk)}, * FROM {table}"
        columns = [d[0] for d in sql.execute(f"{self.select} LIMIT 0").description][1:]
        self.columns, self.at = columns, columns.index(self.pk) + 1
        self.sealed = seal.row_check(table, columns) if seal is not None else None
        self.same = row_matcher(cls, columns)

    def compare(self, rebuilt: Iterable[tuple[str, Any]]) -> Iterator[tuple[int, str, bool]]:
        """Merge-join replayed states with the live rows, both in name order: (row order,
        line, whether it is a difference of fields rather than an unsealed row)."""
        cursor = self.sql.stream(f"{self.select} ORDER BY {self.pk}")
        for name, state, found in merge_join(rebuilt, ((r[self.at], r) for r in cursor)):
            yield from self.check(name, state, found)

    def check(
        self, name: Any, state: Any, found: Sequence[Any] | None
    ) -> list[tuple[int, str, bool]]:
        """The lines for one name: its replayed state and its live row (rowid, *values),
        either of which may be None."""
        kind = self.kind
        if found is None:
            return [(0, f"{kind} {name}: missing from the live projection", True)]
        rowid, values = found[0], found[1:]
        out = []
        if self.sealed is not None and not self.sealed(values):
            out.append((rowid, f"{kind} {name}: row not sealed by rotator", False))
        if state is None:
            out.append((rowid, f"{kind} {name}: not in the log", True))
        elif not self.same(values, state):
            row = {k: v for k, v in zip(self.columns, values, strict=True) if k != "mac"}
            live = self.decode(row, check=False)
            out += [(rowid, line, True) for line in diff_one(kind, name, live, state)]
        return out


class StoreAudit:
    sql: Sql
    sealer: Sealer | None
    anchor: Anchor | None

    def list_keys(self) -> list[KeyState]:
        raise NotImplementedError

    def identities(self) -> list[IdentityState]:
        raise NotImplementedError

    def _write(self, lock: bool = True) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    def _save(
        self, keys: dict[str, KeyState | None], idents: dict[str, IdentityState | None]
    ) -> None:
        raise NotImplementedError

    def _set_head(self, position: int, event_hash: str) -> None:
        raise NotImplementedError

    def _key(self, row: dict[str, Any], check: bool = True) -> KeyState:
        raise NotImplementedError

    def _ident(self, row: dict[str, Any], check: bool = True) -> IdentityState:
        raise NotImplementedError

    # --- audit and rebuild ---------------------------------------------------------------

    def verify_chain(self) -> tuple[int, str | None]:
        """Recompute the hash chain. Returns (events checked, first problem or None)."""
        with self.sql.reading():
            chain = check_log(self.sql.stream("SELECT * FROM events ORDER BY position"), None)
        return chain.events, chain.problem

    def rebuild(self, check_only: bool = False) -> list[str]:
        """Rebuild the projections from the log. Returns the differences found between the
        live projection and the replayed one (rows that are not rotator's own, by their MAC,
        included); unless check_only, replaces the live one, sealed. Streams one key and one
        identity at a time (store_replay.py): memory does not grow with the log."""
        with self._write(lock=not check_only):
            problem = None if check_only else self.log_problem()
            if problem is not None:
                raise StoreError(f"refusing to rebuild the projection: {problem}")
            seal = self.sealer
            keys, idents = _Table(self, "keys", seal), _Table(self, "identities", seal)
            diffs: list[str] = []
            # named in the order of the full scans before: keys then identities, by rowid
            unsealed: list[tuple[int, int, str]] = []
            for table, lines in enumerate(
                (
                    keys.compare(key_states(self._stream("key_id"))),
                    idents.compare(identity_states(self._stream("identity"))),
                )
            ):
                for rowid, line, field_diff in lines:
                    if field_diff:
                        diffs.append(line)
                    else:
                        unsealed.append((table, rowid, line))
            # a row whose fields differ is not rotator's anyway: name each row once
            named = {" ".join(d.split(" ")[:2]).rstrip(":") for d in diffs}
            diffs += [u for _, _, u in sorted(unsealed) if u.split(":")[0] not in named]
            if not check_only:
                # a second pass: the live rows were needed until the comparison was over
                self.sql.execute("DELETE FROM keys")
                self.sql.execute("DELETE FROM identities")
                for some in batched(key_states(self._stream("key_id")), _BATCH):
                    self._save(dict[str, KeyState | None](some), {})
                for names in batched(identity_states(self._stream("identity")), _BATCH):
                    self._save({}, dict[str, IdentityState | None](names))
                head = self.head()
                if head is not None:
                    self._set_head(*head)
        return diffs

    def _stream(self, column: str) -> Cursor:
        return self.sql.stream(stream_sql(column))

    def head(self) -> tuple[int, str] | None:
        """(position, hash) of the newest event: O(1), the value to keep elsewhere."""
        row = self.sql.execute(
            "SELECT position, hash FROM events ORDER BY position DESC LIMIT 1"
        ).fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def projection_head(self) -> tuple[int, bool] | None:
        """(position the projection says it has folded, whether its seal holds)."""
        row = self.sql.execute("SELECT position, mac FROM projection_head WHERE id = 1").fetchone()
        if row is None:
            return None
        position, mac = int(row[0]), row[1]
        event = self.sql.execute(
            "SELECT hash FROM events WHERE position = ?", [position]
        ).fetchone()
        ok = self.sealer is None or (
            event is not None and mac == self.sealer.head(position, str(event[0]))
        )
        return position, ok

    def audit(self) -> AuditReport:
        """The chain, every MAC (with the audit key), every anchor line and the projection's
        head: one pass over the anchor, one over the events, one over each projection table,
        all in one snapshot of the database."""
        with self.sql.reading():
            return self._audit()

    def _audit(self) -> AuditReport:
        seal = self.sealer
        anchored = self._anchor_check()
        chain = self._chain(anchored)
        report = AuditReport(chain.events, chain.problem, chain.sealed, chain.bad_macs)
        if seal is not None:
            for table, name in (("keys", "key_id"), ("identities", "identity")):
                cursor = self.sql.stream(f"SELECT * FROM {table}")
                columns = [d[0] for d in cursor.description]
                sealed, at = seal.row_check(table, columns), columns.index(name)
                report.bad_macs += [
                    f"{table} row {values[at]}: not sealed by rotator"
                    for values in cursor
                    if not sealed(values)
                ]
        report.anchor = anchored.problem
        report.head = self.head_problem()
        return report

    def log_problem(self) -> str | None:
        """What makes the log unfit to be replayed into the projection: a broken chain, an
        event MAC that is not rotator's or was removed, an anchor line that disagrees, or
        (with the key) a log whose end nothing keyed seals, neither its last event's MAC nor
        the projection head's. Only a key made by this command (Sealer.new) may seal a log
        that nothing shows was ever sealed."""
        seal = self.sealer
        anchored = self._anchor_check()
        if anchored.problem is not None:
            return anchored.problem
        chain = self._chain(anchored)
        if chain.problem is not None:
            return f"hash chain broken: {chain.problem}"
        if chain.bad_macs:
            return f"{chain.bad_macs[0]} ({len(chain.bad_macs)} MACs do not match)"
        head = self.head_problem()
        if seal is None or chain.events == 0 or chain.last_sealed or head is None:
            return None
        never_sealed = chain.sealed == 0 and anchored.keyed_from is None
        if seal.new and never_sealed and head in (HEAD_MISSING, HEAD_REMOVED):
            return None
        return (
            f"{head}, and no MAC on its last event, although the audit key exists: the log's "
            "MACs were removed"
        )

    def _chain(self, anchored: AnchorCheck) -> ChainResult:
        """The whole log checked: the chain, and with the key every MAC (an unsealed event
        from where the anchor shows the log sealed counts as one removed)."""
        seal = self.sealer
        return check_log(
            self.sql.stream("SELECT * FROM events ORDER BY position"),
            seal.event if seal is not None else None,
            anchored.keyed_from,
        )

    def head_problem(self) -> str | None:
        """With the audit key and a log: the projection's head names the log's last event
        and carries rotator's MAC of it (the whole chain up to it)."""
        head = self.head()
        if self.sealer is None or head is None:
            return None
        row = self.sql.execute("SELECT position, mac FROM projection_head WHERE id = 1").fetchone()
        if row is None:
            return HEAD_MISSING
        if row[1] is None:
            return HEAD_REMOVED
        if row[0] != head[0]:
            return f"projection head: event {row[0]}, but the log ends at event {head[0]}"
        if not hmac.compare_digest(str(row[1]), self.sealer.head(*head)):
            return "projection head: MAC does not match (rewritten)"
        return None

    def consistency_problem(self) -> str | None:
        """What the daemon checks before it acts, in O(1): the projection has folded exactly
        the log's last event (its seal holds), and the anchor's last line is rotator's and
        in the log."""
        head = self.head()
        folded = self.projection_head()
        if head is not None:
            if folded is None or folded[0] != head[0]:
                at = folded[0] if folded else 0
                return f"the projection has folded event {at} but the log ends at {head[0]}"
            if not folded[1]:
                return "the projection's head is not sealed by rotator (edited)"
        if self.anchor is None:
            return None
        with self.sql.reading():
            return tail_problem(self.anchor, self.sealer, self.sql)

    def keyed(self) -> bool:
        return self.sealer is not None

    def anchored(self) -> str | None:
        if self.anchor is None or self.anchor.last() is None:
            return None
        return str(self.anchor.path)

    def anchor_problem(self) -> str | None:
        """None if every anchor line is rotator's and the log holds each anchored event;
        else the first thing wrong (a forged line, a cut or rolled back log)."""
        return self._anchor_check().problem

    def _anchor_check(self) -> AnchorCheck:
        if self.anchor is None:
            return AnchorCheck()
        with self.sql.reading():
            return check_anchor(self.anchor, self.sealer, self.sql)


# whether the log already depends on an audit key: an event or the projection's head sealed
SEALED_SQL = (
    "SELECT 1 FROM events WHERE mac IS NOT NULL "
    "UNION ALL SELECT 1 FROM projection_head WHERE mac IS NOT NULL LIMIT 1"
)
HEAD_MISSING = "projection head: missing (the projection is not sealed)"
HEAD_REMOVED = "projection head: MAC removed"
