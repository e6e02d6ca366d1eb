"""`audit verify` and `db rebuild` in streaming passes (store_replay.py): the same answers
as the in-memory implementations they replaced (kept here as the reference), for an honest
log and for every kind of tampering; and structurally bounded memory: the stream queries
need no sort, and the folds and the merge join hold one item of each stream at a time."""

from __future__ import annotations

import dataclasses
import hmac
import json
import os
import sqlite3
import threading
import types
import typing
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from rotator.adapters.store import audit as store_audit
from rotator.adapters.store import replay as sr
from rotator.adapters.store.anchor import Anchor
from rotator.adapters.store.audit import AuditReport
from rotator.adapters.store.rows import GENESIS, event_from_row, event_hash
from rotator.adapters.store.seal import ROW_MAC, Sealer
from rotator.adapters.store.sqlite import SqliteEventStore
from rotator.domain import events as ev
from rotator.domain.errors import StoreError
from rotator.domain.model import IdentityState, KeyState, apply_identity, apply_key
from rotator.domain.states import Mode, Role
from rotator.timeutil import iso

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
KEY = b"k" * 32

# --- the reference: the in-memory implementations the streaming passes replaced -------------


def ref_verify_chain(rows: Iterable[dict[str, Any]]) -> tuple[int, str | None]:
    prev, n, expected_pos = GENESIS, 0, 1
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


def ref_audit(store: SqliteEventStore) -> AuditReport:
    report = AuditReport()
    report.events, report.problem = ref_verify_chain(
        store.db.query("SELECT * FROM events ORDER BY position")
    )
    sealer = store.sealer
    assert sealer is not None
    for pos, digest, mac in store.db.execute(
        "SELECT position, hash, mac FROM events WHERE mac IS NOT NULL ORDER BY position"
    ):
        report.sealed += 1
        if not hmac.compare_digest(mac, sealer.event(digest)):
            report.bad_macs.append(f"event {pos}: MAC does not match (rewritten)")
    for table, name in (("keys", "key_id"), ("identities", "identity")):
        for row in store.db.query(f"SELECT * FROM {table}"):
            if row["mac"] != sealer.row(table, row):
                report.bad_macs.append(f"{table} row {row[name]}: not sealed by rotator")
    report.anchor = store.anchor_problem()
    last = store.db.execute("SELECT position, hash FROM events ORDER BY position DESC").fetchone()
    head = store.db.execute("SELECT position, mac FROM projection_head").fetchone()
    if last is not None and head[0] != last[0]:
        report.head = f"projection head: event {head[0]}, but the log ends at event {last[0]}"
    elif last is not None and head[1] != sealer.head(*last):
        report.head = "projection head: MAC does not match (rewritten)"
    return report


def ref_replay(store: SqliteEventStore) -> tuple[dict[str, KeyState], dict[str, IdentityState]]:
    keys: dict[str, KeyState | None] = {}
    idents: dict[str, IdentityState | None] = {}
    for stored in store.events():
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


def ref_diff(kind: str, live: dict[str, Any], rebuilt: dict[str, Any]) -> list[str]:
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


def ref_rebuild_check(store: SqliteEventStore) -> list[str]:
    keys, idents = ref_replay(store)
    live_keys, live_idents, unsealed = {}, {}, []
    for r in store.db.query("SELECT * FROM keys"):
        if store.sealer is not None and r["mac"] != store.sealer.row("keys", r):
            unsealed.append(f"key {r['key_id']}: row not sealed by rotator")
        live_keys[r["key_id"]] = store._key(r, check=False)
    for r in store.db.query("SELECT * FROM identities"):
        if store.sealer is not None and r["mac"] != store.sealer.row("identities", r):
            unsealed.append(f"identity {r['identity']}: row not sealed by rotator")
        live_idents[r["identity"]] = store._ident(r, check=False)
    diffs = ref_diff("key", live_keys, keys) + ref_diff("identity", live_idents, idents)
    named = {" ".join(d.split(" ")[:2]).rstrip(":") for d in diffs}
    return diffs + [u for u in unsealed if u.split(":")[0] not in named]


# --- a log with every event type ------------------------------------------------------------


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def ids(key_id: str, identity: str, hours: float, selector: str) -> dict[str, Any]:
    return {
        "at": at(hours),
        "key_id": key_id,
        "identity": identity,
        "domain": identity,
        "selector": selector,
    }


def generated(key_id: str, identity: str, hours: float, selector: str, **kw: Any) -> Any:
    cls = kw.pop("cls", ev.KeyGenerated)
    return cls(
        **ids(key_id, identity, hours, selector),
        policy="demo",
        algorithm="ed25519",
        bits=256,
        fingerprint="cd" * 32,
        zone=identity,
        record_name=f"{selector}._domainkey.{identity}.",
        record="v=DKIM1; k=ed25519; p=QUJD",
        ttl=60,
        **kw,
    )


def every_type(name: str, t: float = 0) -> list[ev.Event]:
    """One identity through every event type there is (a valid sequence)."""
    k1, k2, k3 = (f"{name}-{n}" for n in (1, 2, 3))
    results = ({"server": "ns1", "address": "192.0.2.1", "ok": True},)
    return [
        ev.IdentityAdded(
            at=at(t),
            actor="ålice",
            reason="onboard ☃",
            origin="uid=1000",
            identity=name,
            domain=name,
            zone=name,
            policy="demo",
            signing_pattern=f"*@{name}",
            customer="Acme",
            mode=Mode.CNAME,
            role=Role.CUSTOMER,
        ),
        ev.RotationDeferred(
            at=at(t + 1), identity=name, domain=name, retry_at=at(t + 2), notice="no slot"
        ),
        ev.RotationRequested(at=at(t + 2), identity=name, domain=name, reason="asked"),
        generated(k1, name, t + 3, "s1", notice="2 CNAMEs left", lookup_name=f"s1.{name}."),
        ev.ActionFailed(
            **ids(k1, name, t + 4, "s1"),
            action="publish",
            error="SERVFAIL",
            attempt=1,
            retry_at=at(t + 5),
            details=({"server": "ns1", "rcode": "SERVFAIL"},),
        ),
        ev.StepParked(**ids(k1, name, t + 5, "s1"), action="publish", error="x", attempts=5),
        ev.StepResumed(**ids(k1, name, t + 6, "s1")),
        ev.KeyPublished(**ids(k1, name, t + 7, "s1"), server="ns1"),
        ev.KeyVerified(
            **ids(k1, name, t + 8, "s1"),
            results=results,
            activate_at=at(t + 9),
            waited=1.5,
            lagged=({"server": "ns2", "answer": None},),
        ),
        ev.ActivationRequested(**ids(k1, name, t + 8.5, "s1")),
        ev.KeyActivated(
            **ids(k1, name, t + 9, "s1"),
            rotate_at=at(t + 100),
            targets=({"target": "opendkim", "written": True},),
        ),
        generated(k2, name, t + 10, "s2", replaces=k1),
        ev.KeyPublished(**ids(k2, name, t + 11, "s2"), server="ns1"),
        ev.KeyVerified(**ids(k2, name, t + 12, "s2"), results=results, activate_at=at(t + 13)),
        ev.KeyActivated(
            **ids(k2, name, t + 13, "s2"), rotate_at=at(t + 200), previous=k1, generate_at=None
        ),
        ev.DrainStarted(**ids(k1, name, t + 14, "s1"), drain_until=at(t + 15), successor=k2),
        ev.RevocationPublished(**ids(k1, name, t + 15, "s1"), server="ns1", record="v=DKIM1; p="),
        ev.KeyRevoked(**ids(k1, name, t + 16, "s1"), results=results, waited=0.25),
        ev.KeyDestroyed(**ids(k1, name, t + 17, "s1"), tombstone_until=at(t + 18)),
        ev.TombstoneRemoved(**ids(k1, name, t + 18, "s1"), server="ns1"),
        ev.KeyCompromised(
            **ids(k2, name, t + 19, "s2"), scope="selector", emergency=True, reason="leak"
        ),
        generated(k3, name, t + 20, "s3", cls=ev.KeyImported),
        ev.KeyWithdrawn(**ids(k3, name, t + 21, "s3")),
    ]


def interleaved(*logs: list[ev.Event]) -> list[ev.Event]:
    out: list[ev.Event] = []
    for step in range(max(len(lg) for lg in logs)):
        out += [lg[step] for lg in logs if step < len(lg)]
    return out


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteEventStore]:
    s = SqliteEventStore(
        tmp_path / "rotator.db", sealer=Sealer(KEY), anchor=Anchor(tmp_path / "anchor.log")
    )
    # several identities, their events interleaved; names whose order is not insertion order
    s.append(
        interleaved(*(every_type(n, i) for i, n in enumerate(("b.org", "a.org", "c.org")))), {}
    )
    esp = ev.IdentityAdded(
        at=at(50), identity="0.org", domain="0.org", zone="0.org", policy="demo",
        signing_pattern="", role=Role.ESP,
    )  # fmt: skip
    s.append([esp], {})
    yield s
    s.close()


def tamper(store: SqliteEventStore, *sql: str) -> None:
    conn = sqlite3.connect(store.path, isolation_level=None)
    conn.execute("DROP TRIGGER IF EXISTS events_no_update")
    conn.execute("DROP TRIGGER IF EXISTS events_no_delete")
    for statement in sql:
        conn.execute(statement)
    conn.close()


def projection(store: SqliteEventStore) -> tuple[list[Any], list[Any]]:
    return (
        store.db.execute("SELECT * FROM keys ORDER BY key_id").fetchall(),
        store.db.execute("SELECT * FROM identities ORDER BY identity").fetchall(),
    )


# --- equal to the definitions ---------------------------------------------------------------


def sample(hint: Any) -> Any:
    """A value of a field's type, not its default, so that decoding it is exercised."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return sample(next(a for a in typing.get_args(hint) if a is not type(None)))
    if isinstance(hint, type) and issubclass(hint, Enum):
        return list(hint)[-1]
    if typing.get_origin(hint) is tuple:
        return ({"server": "ns1", "answers": ["a", None]},)
    values = {datetime: T0 + timedelta(microseconds=5), bool: True, int: 7, float: 1.5}
    return values.get(hint, "ß")


@pytest.mark.parametrize("cls", list(ev.EVENT_TYPES.values()), ids=list(ev.EVENT_TYPES))
def test_decode_event_equals_event_from_row_for_every_type(cls: type[ev.Event]) -> None:
    hints = ev.field_types(cls)
    event = cls(**{f.name: sample(hints[f.name]) for f in dataclasses.fields(cls)})
    row = {
        "type": cls.__name__,
        "payload": json.dumps(event.payload(), sort_keys=True, separators=(",", ":")),
        "at": iso(event.at),
        **{c: getattr(event, c, None) for c in sr.EVENT_COLUMNS[3:]},
    }
    theirs = event_from_row({**row, **sr._NO_STREAM}).event
    mine = sr.decode_event([row[c] for c in sr.EVENT_COLUMNS])
    assert list(vars(mine).items()) == list(vars(theirs).items())
    assert [type(v) for v in vars(mine).values()] == [type(v) for v in vars(theirs).values()]


def test_decode_event_equals_event_from_row(store: SqliteEventStore) -> None:
    columns = ", ".join(sr.EVENT_COLUMNS)
    rows = store.db.execute(f"SELECT {columns} FROM events ORDER BY position").fetchall()
    stored = [s.event for s in store.events()]
    assert [sr.decode_event(r) for r in rows] == stored
    # and field by field with the same types (== alone would let 1 stand for True), built
    # as __init__ builds it
    for row, event in zip(rows, stored, strict=True):
        mine = sr.decode_event(row)
        assert list(vars(mine).items()) == list(vars(event).items())
        for f in dataclasses.fields(event):
            assert type(getattr(mine, f.name)) is type(getattr(event, f.name)), f.name


def test_decode_event_takes_the_reference_path_for_odd_payloads() -> None:
    row = ["KeyPublished", ' {"server": "ns1"} ', T0.isoformat(), "a", "", "x", "x", "k", "s"]
    assert (
        sr.decode_event(row)
        == event_from_row({**dict(zip(sr.EVENT_COLUMNS, row, strict=True)), **sr._NO_STREAM}).event
    )
    with pytest.raises(Exception, match="unknown event type"):
        sr.decode_event(["Nope", "{}", *row[2:]])
    with pytest.raises(TypeError, match="server"):  # a required field missing, as before
        sr.decode_event(["KeyPublished", "{}", *row[2:]])


@pytest.mark.parametrize("cls", list(ev.EVENT_TYPES.values()))
def test_decoder_equals_ev_decode_for_every_field(cls: type[ev.Event]) -> None:
    samples: list[Any] = [None, "x", T0.isoformat(), 0, 1, 2.5, True, [1, {"a": [2]}], {"a": 1}]
    samples += ["third-party", "customer"]  # valid Mode / Role values
    for name, hint in ev.field_types(cls).items():
        if name in ev._COMMON:
            continue
        for value in samples:
            try:
                want: Any = ev.decode(hint, value)
            except ValueError:
                with pytest.raises(ValueError):
                    sr.decoder(hint)(value)
                continue
            got = sr.decoder(hint)(value)
            assert (got, type(got)) == (want, type(want)), (name, hint, value)


def test_row_check_agrees_with_check_row(store: SqliteEventStore) -> None:
    sealer = Sealer(KEY)
    for table in ("keys", "identities"):
        cursor = store.db.execute(f"SELECT * FROM {table}")
        columns = [d[0] for d in cursor.description]
        sealed = sealer.row_check(table, columns)
        for values in cursor:
            row = dict(zip(columns, values, strict=True))
            assert row["mac"].startswith(ROW_MAC) and row["mac"] == sealer.row(table, row)
            sealer.check_row(table, row, "x")
            assert sealed(values)
            for column in columns:  # any value changed, the row is refused
                if column != "mac":
                    edited = [
                        v if c != column else f"{v}x" for c, v in zip(columns, values, strict=True)
                    ]
                    assert not sealed(edited), column
                    with pytest.raises(StoreError, match="not written by rotator"):
                        sealer.check_row(table, dict(zip(columns, edited, strict=True)), "x")


def test_rows_sealed_in_the_first_form_are_still_accepted(store: SqliteEventStore) -> None:
    sealer = Sealer(KEY)
    row = next(iter(store.db.query("SELECT * FROM keys")))
    columns = list(row)
    # what an older rotator wrote: HMAC of [table, the row as a sorted object]
    body = json.dumps(
        ["keys", {k: row[k] for k in sorted(row) if k != "mac"}], separators=(",", ":")
    )
    row["mac"] = hmac.digest(KEY, body.encode(), "sha256").hex()
    assert row["mac"] == sealer.row_v1("keys", row)
    sealer.check_row("keys", row, "x")
    assert sealer.row_check("keys", columns)(list(row.values()))
    for forged in ({**row, "state": "active" if row["state"] != "active" else "draining"},
                   {**row, "mac": ROW_MAC + row["mac"]}):  # fmt: skip
        assert not sealer.row_check("keys", columns)(list(forged.values()))
        with pytest.raises(StoreError, match="not written by rotator"):
            sealer.check_row("keys", forged, "x")


@pytest.mark.parametrize("table", ["keys", "identities"])
def test_row_matcher_agrees_with_from_row(store: SqliteEventStore, table: str) -> None:
    cls, decode = (KeyState, store._key) if table == "keys" else (IdentityState, store._ident)
    cursor = store.db.execute(f"SELECT * FROM {table}")
    columns = [d[0] for d in cursor.description]
    same = sr.row_matcher(cls, columns)
    odd: list[Any] = [None, 0, 1, 2, "", "x", "active", "2026-11-24T12:00:00+00:00", 1.0]
    tried = 0
    for values in cursor.fetchall():
        state = decode(dict(zip(columns, values, strict=True)), check=False)
        assert same(values, state)
        for i, column in enumerate(columns):
            for value in [*odd, f"{values[i]}x", values[i]]:
                changed = (*values[:i], value, *values[i + 1 :])
                try:
                    theirs = decode(dict(zip(columns, changed, strict=True)), check=False)
                except (ValueError, TypeError):
                    continue  # not a row from_row can read: the slow path reports it
                assert same(changed, state) == (theirs == state), (column, value)
                tried += 1
    assert tried > 500


def test_the_chain_hash_is_event_hash(store: SqliteEventStore) -> None:
    # an honest log verifies: every row hashes as event_hash hashed it when written...
    n = int(store.info()["events"])
    honest = ref_verify_chain(store.db.query("SELECT * FROM events ORDER BY position"))
    assert store.verify_chain() == honest == (n, None)
    # ...and a change to any one column of the hashed body is seen, as event_hash sees it
    sql = "SELECT MIN(position) FROM events WHERE type = 'KeyGenerated'"
    pos = store.db.execute(sql).fetchone()[0]
    row = dict(next(iter(store.db.query("SELECT * FROM events WHERE position = ?", [pos]))))
    assert row["key_id"] is not None  # every column holds a value
    edited = (pos, f"event {pos}: content does not match its hash (edited)")
    conn = sqlite3.connect(store.path, isolation_level=None)
    conn.execute("DROP TRIGGER IF EXISTS events_no_update")
    for column in sorted(set(row) - {"position", "prev_hash", "hash", "mac"}):
        conn.execute(f"UPDATE events SET {column} = ? WHERE position = ?", [f"{row[column]}x", pos])
        assert store.verify_chain() == edited, column
        conn.execute(f"UPDATE events SET {column} = ? WHERE position = ?", [row[column], pos])
        assert store.verify_chain() == (n, None)
    conn.close()


# --- audit verify: the same first problem, the same MACs ------------------------------------

TAMPERING = {
    "edited": ["UPDATE events SET reason = 'nothing to see' WHERE position = 7"],
    "deleted first": ["DELETE FROM events WHERE position = 1"],
    "deleted": ["DELETE FROM events WHERE position = 30"],
    "deleted last": ["DELETE FROM events WHERE position = (SELECT MAX(position) FROM events)"],
    "reordered": [
        "UPDATE events SET position = 1000 WHERE position = 12",
        "UPDATE events SET position = 12 WHERE position = 13",
        "UPDATE events SET position = 13 WHERE position = 1000",
    ],
    "payload replaced": [
        "UPDATE events SET payload = (SELECT payload FROM events WHERE position = 1) "
        "WHERE position = (SELECT MIN(position) FROM events WHERE type = 'KeyPublished')"
    ],
    "rehashed": [
        # a first hex digit that differs from the one there, whatever the log's content
        "UPDATE events SET hash = (CASE WHEN hash LIKE 'f%' THEN 'e' ELSE 'f' END) "
        "|| substr(hash, 2) WHERE position = 40",
    ],
    "mac rewritten": ["UPDATE events SET mac = 'x' || substr(mac, 2) WHERE position = 5"],
    "mac removed": ["UPDATE events SET mac = NULL WHERE position = 6"],
    "key row edited": ["UPDATE keys SET attempts = 9 WHERE key_id = 'a.org-2'"],
    "identity row edited": ["UPDATE identities SET zone = 'evil.example'"],
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_audit_finds_what_the_reference_finds(store: SqliteEventStore, case: str) -> None:
    tamper(store, *TAMPERING[case])
    mine, ref = store.audit(), ref_audit(store)
    if case == "mac removed":  # new: a MAC missing after sealed events is reported
        assert mine.bad_macs == ["event 6: MAC removed (after sealed events)"]
        mine.bad_macs = []
    assert mine == ref
    assert store.verify_chain() == ref_verify_chain(
        store.db.query("SELECT * FROM events ORDER BY position")
    )
    assert not mine.ok or case == "mac removed"


def test_audit_of_an_honest_log(store: SqliteEventStore) -> None:
    n = int(store.info()["events"])
    assert store.audit() == ref_audit(store) == AuditReport(n, None, n, [], None)


# --- rebuild --check: the same differences --------------------------------------------------

DRIFT = {
    "key field": ["UPDATE keys SET state = 'active', attempts = 3 WHERE key_id = 'b.org-3'"],
    "identity field": [
        "UPDATE identities SET notice = 'x', rotation_due_at = NULL WHERE identity = 'c.org'"
    ],
    "same value, other text": [
        "UPDATE keys SET since = replace(since, '.000000+00:00', '+00:00') WHERE key_id = 'a.org-1'"
    ],
    "missing rows": [
        "DELETE FROM keys WHERE key_id = 'a.org-1'",
        "DELETE FROM identities WHERE identity = '0.org'",
    ],
    "extra rows": [
        # a copy of a real row under another name (whatever the columns are)
        "CREATE TEMP TABLE ghost AS SELECT * FROM keys WHERE key_id = 'c.org-2'",
        "UPDATE ghost SET key_id = 'ghost', selector = 'ghost.sel'",
        "INSERT INTO keys SELECT * FROM ghost",
        "INSERT INTO identities (identity, domain, zone, policy, signing_pattern, created_at, "
        "version) VALUES ('zz.org', 'zz.org', 'zz.org', 'demo', '', '2026-01-01', 1)",
        "INSERT INTO identities (identity, domain, zone, policy, signing_pattern, created_at, "
        "version) VALUES ('', '', '', 'demo', '', '2026-01-01', 1)",
    ],
    "key moved": ["UPDATE keys SET identity = 'c.org' WHERE key_id IN ('a.org-2', 'b.org-1')"],
    "unsealed rows": [
        "UPDATE keys SET mac = NULL WHERE key_id IN ('c.org-1', 'a.org-3')",
        "UPDATE identities SET mac = 'forged' WHERE identity = 'b.org'",
        "UPDATE keys SET mac = NULL, ttl = 5 WHERE key_id = 'b.org-1'",  # named once
    ],
    "everything": [
        "UPDATE keys SET state = 'active' WHERE key_id = 'c.org-3'",
        "DELETE FROM keys WHERE key_id = 'b.org-2'",
        "UPDATE identities SET mac = NULL",
        "DELETE FROM identities WHERE identity = 'a.org'",
    ],
}


@pytest.mark.parametrize("case", list(DRIFT))
def test_rebuild_check_reports_what_the_reference_reports(
    store: SqliteEventStore, case: str
) -> None:
    assert store.rebuild(check_only=True) == ref_rebuild_check(store) == []
    tamper(store, *DRIFT[case])
    before = projection(store)
    diffs = store.rebuild(check_only=True)
    assert diffs == ref_rebuild_check(store)
    assert diffs or case == "same value, other text"
    assert projection(store) == before  # --check changes nothing


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE events SET identity = 'c.org' WHERE key_id = 'a.org-1' AND type = 'KeyPublished'",
        "UPDATE events SET identity = NULL WHERE key_id = 'b.org-2' AND type = 'KeyVerified'",
    ],
    ids=["another identity", "no identity"],
)
def test_a_key_event_that_names_another_identity(store: SqliteEventStore, sql: str) -> None:
    # the key's stream and the identities' streams each take the rows the fold gave them
    tamper(store, sql, "UPDATE keys SET attempts = 4 WHERE key_id IN ('a.org-1', 'b.org-2')")
    assert store.rebuild(check_only=True) == ref_rebuild_check(store) != []


def test_rows_of_a_key_that_are_not_key_events_are_not_folded(store: SqliteEventStore) -> None:
    # (as the pool's events: a key_id, but no key stream) the key fold takes KeyEvents only
    tamper(store, "UPDATE events SET key_id = 'a.org-1' WHERE type = 'RotationRequested'")
    assert store.rebuild(check_only=True) == ref_rebuild_check(store) == []


@pytest.mark.parametrize("case", list(DRIFT))
def test_rebuild_restores_the_projection_append_wrote(store: SqliteEventStore, case: str) -> None:
    written = projection(store)
    tamper(store, *DRIFT[case])
    expected = ref_rebuild_check(store)
    assert store.rebuild() == expected
    assert projection(store) == written  # every value and MAC as append wrote them
    assert store.rebuild(check_only=True) == []
    assert store.consistency_problem() is None


def test_rebuild_writes_in_batches(store: SqliteEventStore, monkeypatch: Any) -> None:
    written = projection(store)
    tamper(store, *DRIFT["everything"])
    monkeypatch.setattr(store_audit, "_BATCH", 2)
    expected = ref_rebuild_check(store)
    assert store.rebuild() == expected != []
    assert projection(store) == written


def test_rebuild_seals_an_unsealed_store(tmp_path: Path) -> None:
    plain = SqliteEventStore(tmp_path / "r.db")
    plain.append(every_type("a.org"), {})
    plain.close()
    # a log from before the audit key: a key made now (new) seals it, by a rebuild at open
    sealed = SqliteEventStore(tmp_path / "r.db", sealer=Sealer(KEY, new=True))
    assert sealed.audit().ok
    assert sealed.rebuild(check_only=True) == []


# --- bounded memory, structurally -----------------------------------------------------------


@pytest.mark.parametrize("column", ["key_id", "identity"])
def test_the_streams_need_no_sort(store: SqliteEventStore, column: str) -> None:
    # SQLite reads them in index order: nothing is collected to be sorted, in memory or not
    plans = [
        sr.stream_sql(column),
        "SELECT rowid, * FROM keys ORDER BY key_id",
        "SELECT rowid, * FROM identities ORDER BY identity",
        "SELECT * FROM events ORDER BY position",
    ]
    for sql in plans:
        plan = " ".join(r[-1] for r in store.db.execute(f"EXPLAIN QUERY PLAN {sql}"))
        assert "TEMP B-TREE" not in plan, (sql, plan)


class Tape:
    """An iterator that counts what has been taken from it."""

    def __init__(self, items: Iterable[Any]) -> None:
        self.items = iter(items)
        self.taken = 0

    def __iter__(self) -> Tape:
        return self

    def __next__(self) -> Any:
        item = next(self.items)
        self.taken += 1
        return item


def test_merge_join_holds_one_item_of_each_side() -> None:
    rebuilt = Tape((n, f"r{n}") for n in ("a", "b", "d", "e", "g"))
    live = Tape((n, f"l{n}") for n in ("b", "c", "d", "f", "g", "h"))
    out = []
    for name, mine, theirs in sr.merge_join(rebuilt, live):
        # what has been read is at most one item past the name being yielded, on each side
        assert rebuilt.taken <= sum(n <= name for n in "abdeg") + 1
        assert live.taken <= sum(n <= name for n in "bcdfgh") + 1
        out.append((name, mine, theirs))
    assert out == [
        ("a", "ra", None),
        ("b", "rb", "lb"),
        ("c", None, "lc"),
        ("d", "rd", "ld"),
        ("e", "re", None),
        ("f", None, "lf"),
        ("g", "rg", "lg"),
        ("h", None, "lh"),
    ]


def test_merge_join_refuses_a_stream_out_of_order() -> None:
    with pytest.raises(StoreError, match="came after"):
        list(sr.merge_join([("b", 1), ("a", 2)], []))
    with pytest.raises(StoreError, match="came after"):
        list(sr.merge_join([], [("a", 1), ("a", 2)]))


def test_folds_read_one_stream_at_a_time(store: SqliteEventStore) -> None:
    for column, fold in (("key_id", sr.key_states), ("identity", sr.identity_states)):
        rows = store._stream(column).fetchall()
        tape = Tape(rows)
        index = sr.KEY_ID if column == "key_id" else sr.IDENTITY
        seen = 0
        for name, _state in fold(tape):
            last = max(i for i, r in enumerate(rows) if r[index] == name)
            # the stream of `name` and the first row of the next one, nothing further
            assert tape.taken <= last + 2
            seen += 1
        assert seen == len({r[index] for r in rows})


def test_the_streams_replay_what_the_reference_replays(store: SqliteEventStore) -> None:
    keys, idents = ref_replay(store)
    assert dict(sr.key_states(store._stream("key_id"))) == keys
    assert dict(sr.identity_states(store._stream("identity"))) == idents
    assert list(dict(sr.key_states(store._stream("key_id")))) == sorted(keys)


@pytest.mark.parametrize("key", [b"k" * 32, bytes(range(64)), b"long" * 40, b""])
def test_the_sealers_mac_is_hmac_sha256(key: bytes) -> None:
    sealer = Sealer(key)
    for text in ("", "event:" + "0" * 64, "é" * 100, "x" * 1000):
        assert sealer.mac(text) == hmac.new(key, text.encode(), "sha256").hexdigest()
    assert sealer.mac("a") != Sealer(key + b"!").mac("a")


# --- what an attacker who can write the database, but holds no key, can try ----------------


def strip_and_rehash(store: SqliteEventStore, *sql: str) -> tuple[int, str]:
    """Every event's MAC removed, event 1's actor edited and the whole chain hashed again,
    then `sql`. Returns the forged log's head (position, hash)."""
    conn = sqlite3.connect(store.path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("DROP TRIGGER IF EXISTS events_no_update")
    prev, position = GENESIS, 0
    for row in [dict(r) for r in conn.execute("SELECT * FROM events ORDER BY position")]:
        position = row["position"]
        row["actor"] = "mallory" if position == 1 else row["actor"]
        row["prev_hash"] = prev
        prev = event_hash({k: v for k, v in row.items() if k not in ("position", "hash", "mac")})
        conn.execute(
            "UPDATE events SET actor = ?, prev_hash = ?, hash = ?, mac = NULL WHERE position = ?",
            [row["actor"], row["prev_hash"], prev, position],
        )
    for statement in sql:
        conn.execute(statement)
    conn.close()
    return position, prev


def add_line(store: SqliteEventStore, line: str) -> None:
    assert store.anchor is not None
    with open(store.anchor.path, "a") as fh:
        fh.write(line + "\n")


def reopen(store: SqliteEventStore, sealer: Sealer | None = None) -> SqliteEventStore:
    """What a writing command (the daemon's start) opens: the store with the key."""
    return SqliteEventStore(store.path, sealer=sealer or Sealer(KEY), anchor=store.anchor)


def refused_everywhere(store: SqliteEventStore, reason: str) -> None:
    """`audit verify`, `db rebuild` and a writer's open (the daemon's start) each refuse,
    and the rebuild writes nothing."""
    report = store.audit()
    assert not report.ok
    assert reason in " ".join(
        [report.problem or "", *report.bad_macs, report.anchor or "", report.head or ""]
    )
    before = projection(store)
    with pytest.raises(StoreError, match="refusing to rebuild"):
        store.rebuild()
    assert projection(store) == before
    problem = None
    try:
        reopen(store).close()
    except StoreError as exc:
        problem = str(exc)
    assert problem is not None or store.consistency_problem() is not None


def test_every_mac_removed_and_the_chain_rehashed(store: SqliteEventStore) -> None:
    position, digest = strip_and_rehash(store, "UPDATE projection_head SET mac = NULL")
    add_line(store, f"{position} {digest}")  # the forged head, in the old form
    assert store.audit().sealed == 0
    # the anchor's keyed lines name the hashes the log had
    refused_everywhere(store, "differs from the anchor")


def test_every_mac_removed_the_anchor_unchanged(store: SqliteEventStore) -> None:
    strip_and_rehash(store, "UPDATE projection_head SET mac = NULL")
    refused_everywhere(store, "differs from the anchor")
    # an event the anchor shows sealed, and every event after it, must still be
    report = store.audit()
    last = int(store.info()["events"])
    assert f"event {last}: MAC removed (after sealed events)" in report.bad_macs


def test_every_mac_removed_without_an_anchor(store: SqliteEventStore) -> None:
    # (an anchor that is not append-only can be deleted): the key and the head remember
    assert store.anchor is not None
    store.anchor.path.unlink()
    store.anchor = None
    strip_and_rehash(store, "UPDATE projection_head SET mac = NULL")
    refused_everywhere(store, "projection head: MAC removed")
    with pytest.raises(StoreError, match="no MAC on its last event"):
        reopen(store).close()


def test_head_mac_removed(store: SqliteEventStore) -> None:
    tamper(store, "UPDATE projection_head SET mac = NULL")
    assert store.audit().head == "projection head: MAC removed"
    # the log is intact and keyed by its last event's MAC: a writer seals the head again
    reopen(store).close()
    assert store.audit().ok and store.consistency_problem() is None


def test_a_rollback_with_a_forged_anchor_line(store: SqliteEventStore, tmp_path: Path) -> None:
    assert store.anchor is not None
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    old = tmp_path / "old.db"
    old.write_bytes(store.path.read_bytes())
    old_lines = store.anchor.path.read_text().splitlines()
    position, digest = store.head() or (0, "")
    esp = ev.IdentityAdded(
        at=at(60), identity="1.org", domain="1.org", zone="1.org", policy="demo",
        signing_pattern="", role=Role.ESP,
    )  # fmt: skip
    store.append([esp], {})
    store.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{store.path}{suffix}").unlink(missing_ok=True)
    store.path.write_bytes(old.read_bytes())
    forged = SqliteEventStore(store.path, readonly=True, sealer=Sealer(KEY), anchor=store.anchor)
    for line in (
        f"{position} {digest}",  # no MAC
        f"{position} {digest} {'0' * 64}",  # a MAC that is not rotator's
        old_lines[-1],  # rotator's own line for that head, appended again
    ):
        add_line(forged, line)
        report = forged.audit()
        assert report.anchor is not None and "rolled back" in report.anchor
        assert forged.consistency_problem() is not None
    forged.close()


@pytest.mark.parametrize("form", ["no MAC", "a MAC that is not rotator's", "replayed"])
def test_an_anchor_line_without_a_valid_mac_after_keyed_lines(
    store: SqliteEventStore, form: str
) -> None:
    assert store.anchor is not None
    lines = store.anchor.path.read_text().splitlines()
    position, digest = store.head() or (0, "")
    add_line(
        store,
        {
            "no MAC": f"{position} {digest}",
            "a MAC that is not rotator's": f"{position} {digest} {'0' * 64}",
            "replayed": lines[-1],
        }[form],
    )
    problem = store.audit().anchor
    assert problem is not None and "forged" in problem
    assert store.consistency_problem() is not None
    with pytest.raises(StoreError, match="refusing to rebuild"):
        store.rebuild()


def test_an_anchor_from_before_keyed_lines_still_verifies(store: SqliteEventStore) -> None:
    # what an earlier rotator wrote: `position hash`, two of them out of order (two writers
    # committed one way and wrote the other)
    assert store.anchor is not None
    rows = store.db.execute("SELECT position, hash FROM events ORDER BY position").fetchall()
    legacy = [rows[4], rows[9], rows[7], rows[-1]]
    store.anchor.path.write_text("".join(f"{p} {h}\n" for p, h in legacy))
    assert store.audit().ok and store.consistency_problem() is None
    store.append(every_type("d.org", 70)[:2], {})  # keyed lines follow
    assert len(store.anchor.path.read_text().split("\n")[-2].split()) == 3
    assert store.audit().ok and store.consistency_problem() is None
    # an old line that the log does not hold is still seen
    store.anchor.path.write_text(f"5 {'0' * 64}\n" + store.anchor.path.read_text())
    assert (
        store.anchor_problem() == f"event 5 differs from the anchor {store.anchor.path}: rewritten"
    )


def test_a_failed_anchor_write_is_written_by_the_next_append(
    store: SqliteEventStore, monkeypatch: Any
) -> None:
    assert store.anchor is not None
    before = store.anchor.path.read_text()

    def full(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    first = store.append(every_type("d.org", 70)[:1], {})  # committed all the same
    assert store.anchor.path.read_text() == before
    monkeypatch.undo()
    second = store.append(every_type("d.org", 70)[1:2], {})
    positions = [int(ln.split()[0]) for ln in store.anchor.path.read_text().splitlines()]
    assert positions[-2:] == [first[-1].position, second[-1].position]
    assert store.audit().ok and store.consistency_problem() is None


def test_the_anchor_is_locked_across_the_commit(store: SqliteEventStore) -> None:
    # a second writer waits for the first's line: lines are in commit order
    assert store.anchor is not None
    other = reopen(store)
    done = threading.Event()

    def append() -> None:
        other.append(every_type("d.org", 70)[:1], {})
        done.set()

    thread = threading.Thread(target=append)
    with store.anchor.locked(store.sealer):
        thread.start()
        assert not done.wait(0.3)
    thread.join(10)
    assert done.is_set()
    other.close()
    assert store.audit().ok


def test_a_damaged_anchor_is_named_and_nothing_is_appended(store: SqliteEventStore) -> None:
    assert store.anchor is not None
    path = store.anchor.path
    events = int(store.info()["events"])
    with open(path, "a") as fh:
        fh.write("12 abc")  # a line cut short
    assert (
        store.consistency_problem() == f"anchor {path}: its last line is cut short; move it aside"
    )
    assert store.anchor_problem() == (f"anchor {path}: line 3 '12 abc' is not 'position hash mac'")
    with pytest.raises(StoreError, match="cut short"):
        store.append(every_type("d.org", 70)[:1], {})
    assert int(store.info()["events"]) == events
