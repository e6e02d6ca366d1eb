"""Checking the log against itself and against what is kept outside it: the hash chain,
the MACs of events and projection rows (audit key), the anchor's last entry (a cut-off
tail), and the projections replayed from scratch compared with the live ones."""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from ..domain import events as ev
from ..domain.model import IdentityState, KeyState, apply_identity, apply_key
from ..ports import StoredEvent
from .store_rows import GENESIS, event_hash
from .store_seal import Anchor, Sealer


def verify_chain(rows: Iterable[dict[str, Any]]) -> tuple[int, str | None]:
    """Recompute the hash chain over event rows in position order. Returns (events
    checked, first problem or None)."""
    prev = GENESIS
    n = 0
    expected_pos = 1
    for row in rows:
        n += 1
        pos = row["position"]
        if pos != expected_pos:
            return n, f"event at position {expected_pos} is missing (next is {pos})"
        if row["prev_hash"] != prev:
            return n, f"event {pos}: prev_hash does not link to event {pos - 1}"
        body = {k: v for k, v in row.items() if k != "position"}
        if event_hash(body) != row["hash"]:
            return n, f"event {pos}: content does not match its hash (edited)"
        prev = row["hash"]
        expected_pos += 1
    return n, None


def replay(
    events: Iterable[StoredEvent],
) -> tuple[dict[str, KeyState], dict[str, IdentityState]]:
    """Fold every event from scratch (in memory)."""
    keys: dict[str, KeyState | None] = {}
    idents: dict[str, IdentityState | None] = {}
    for stored in events:
        event = stored.event
        if isinstance(event, ev.KeyEvent):
            keys[event.key_id] = apply_key(keys.get(event.key_id), event)
        name = getattr(event, "identity", None)
        if name is not None:
            idents[name] = apply_identity(idents.get(name), event)
    return (
        {k: v for k, v in keys.items() if v is not None},
        {k: v for k, v in idents.items() if v is not None},
    )


def diff(kind: str, live: dict[str, Any], rebuilt: dict[str, Any]) -> list[str]:
    """One line per difference between a live projection and a replayed one."""
    out: list[str] = []
    for ident in sorted(set(live) | set(rebuilt)):
        a, b = live.get(ident), rebuilt.get(ident)
        if a is None or b is None:
            where = "missing from the live projection" if a is None else "not in the log"
            out.append(f"{kind} {ident}: {where}")
            continue
        for f in dataclasses.fields(a):
            if getattr(a, f.name) != getattr(b, f.name):
                out.append(
                    f"{kind} {ident}: {f.name} live={getattr(a, f.name)!r} "
                    f"rebuilt={getattr(b, f.name)!r}"
                )
    return out


@dataclass
class AuditReport:
    events: int = 0
    problem: str | None = None  # the first break of the chain
    sealed: int = 0  # events carrying a MAC
    bad_macs: list[str] = field(default_factory=list)
    anchor: str | None = None  # what the anchor says about the tail, if anything is wrong

    @property
    def ok(self) -> bool:
        return self.problem is None and not self.bad_macs and self.anchor is None


class StoreAudit:
    db: sqlite_utils.Database
    path: Path
    sealer: Sealer | None
    anchor: Anchor | None

    def events(self, flt: Any = None) -> Iterator[StoredEvent]:
        raise NotImplementedError

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
        return verify_chain(self.db.query("SELECT * FROM events ORDER BY position"))

    def replay(self) -> tuple[dict[str, KeyState], dict[str, IdentityState]]:
        """Fold every event from scratch (in memory)."""
        return replay(self.events())

    def rebuild(self, check_only: bool = False) -> list[str]:
        """Rebuild the projections from the log. Returns the differences found between the
        live projection and the replayed one (rows that are not rotator's own, by their MAC,
        included); unless check_only, replaces the live one, sealed."""
        with self._write(lock=not check_only):
            keys, idents = self.replay()
            live_keys, live_idents, unsealed = {}, {}, []
            for r in self.db.query("SELECT * FROM keys"):
                if self.sealer is not None and r["mac"] != self.sealer.row("keys", r):
                    unsealed.append(f"key {r['key_id']}: row not sealed by rotator")
                live_keys[r["key_id"]] = self._key(r, check=False)
            for r in self.db.query("SELECT * FROM identities"):
                if self.sealer is not None and r["mac"] != self.sealer.row("identities", r):
                    unsealed.append(f"identity {r['identity']}: row not sealed by rotator")
                live_idents[r["identity"]] = self._ident(r, check=False)
            diffs = diff("key", live_keys, keys)
            diffs += diff("identity", live_idents, idents)
            # a row whose fields differ is not rotator's anyway: name each row once
            named = {" ".join(d.split(" ")[:2]).rstrip(":") for d in diffs}
            diffs += [u for u in unsealed if u.split(":")[0] not in named]
            if not check_only:
                self.db.execute("DELETE FROM keys")
                self.db.execute("DELETE FROM identities")
                self._save(dict(keys.items()), dict(idents.items()))
                head = self.head()
                if head is not None:
                    self._set_head(*head)
        return diffs

    def head(self) -> tuple[int, str] | None:
        """(position, hash) of the newest event: O(1), the value to keep elsewhere."""
        row = self.db.execute(
            "SELECT position, hash FROM events ORDER BY position DESC LIMIT 1"
        ).fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def projection_head(self) -> tuple[int, bool] | None:
        """(position the projection says it has folded, whether its seal holds)."""
        row = self.db.execute("SELECT position, mac FROM projection_head WHERE id = 1").fetchone()
        if row is None:
            return None
        position, mac = int(row[0]), row[1]
        event = self.db.execute("SELECT hash FROM events WHERE position = ?", [position]).fetchone()
        ok = self.sealer is None or (
            event is not None and mac == self.sealer.head(position, str(event[0]))
        )
        return position, ok

    def audit(self) -> AuditReport:
        """The chain, every MAC (with the audit key), and the tail against the anchor."""
        report = AuditReport()
        report.events, report.problem = self.verify_chain()
        if self.sealer is not None:
            for pos, digest, mac in self.db.execute(
                "SELECT position, hash, mac FROM events WHERE mac IS NOT NULL ORDER BY position"
            ):
                report.sealed += 1
                if not hmac.compare_digest(mac, self.sealer.event(digest)):
                    report.bad_macs.append(f"event {pos}: MAC does not match (rewritten)")
            for table, name in (("keys", "key_id"), ("identities", "identity")):
                for row in self.db.query(f"SELECT * FROM {table}"):
                    if row["mac"] != self.sealer.row(table, row):
                        report.bad_macs.append(f"{table} row {row[name]}: not sealed by rotator")
        report.anchor = self.anchor_problem()
        return report

    def consistency_problem(self) -> str | None:
        """What the daemon checks before it acts: the projection has folded exactly the
        log's last event (its seal holds), and the log is not shorter than the anchor."""
        head = self.head()
        folded = self.projection_head()
        if head is not None:
            if folded is None or folded[0] != head[0]:
                at = folded[0] if folded else 0
                return f"the projection has folded event {at} but the log ends at {head[0]}"
            if not folded[1]:
                return "the projection's head is not sealed by rotator (edited)"
        return self.anchor_problem()

    def anchor_problem(self) -> str | None:
        """None if the log holds the anchor's last entry; else what is wrong (a cut tail)."""
        if self.anchor is None:
            return None
        last = self.anchor.last()
        if last is None:
            return None
        position, digest = last
        row = self.db.execute("SELECT hash FROM events WHERE position = ?", [position]).fetchone()
        head = self.head()
        if row is None:
            return (
                f"the log ends at event {head[0] if head else 0} but the anchor "
                f"{self.anchor.path} has event {position}: the log was cut off"
            )
        if row[0] != digest:
            return f"event {position} differs from the anchor {self.anchor.path}: rewritten"
        return None
