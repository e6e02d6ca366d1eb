"""The event store's reads of the projections: keys and identities by name (one at a time or
a batch in a few statements), by due time, and the aggregates monitoring needs."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Executor
from datetime import datetime
from typing import Any

from ...domain.model import IdentityState, KeyState
from ...domain.names import covered_by
from ...domain.reasons import CUSTOMER_DNS, Reason
from ...domain.states import State
from ...ports import (
    DUE_BATCH,
    SIGNING_KEY_COLUMNS,
    SigningRow,
)
from ...ports.monitoring import IdentityCount, IdentityTimes, KeyCount, StoreCounts
from ...timeutil import iso, parse_iso
from .connection import Sql, columns, rows_among
from .overview import key_order
from .seal import Sealer
from .signing import ordered_rows, sealed_rows, start_check


class StoreReads:
    sql: Sql
    sealer: Sealer | None

    def _key(self, row: dict[str, Any], check: bool = True) -> KeyState:
        raise NotImplementedError

    def _ident(self, row: dict[str, Any], check: bool = True) -> IdentityState:
        raise NotImplementedError

    def key(self, key_id: str) -> KeyState | None:
        rows = list(self.sql.query("SELECT * FROM keys WHERE key_id = ?", [key_id]))
        return self._key(rows[0]) if rows else None

    def keys_by_id(self, key_ids: Collection[str]) -> dict[str, KeyState]:
        return {
            k.key_id: k for k in map(self._key, rows_among(self.sql, "keys", "key_id", key_ids))
        }

    def identities_named(self, names: Collection[str]) -> dict[str, IdentityState]:
        rows = rows_among(self.sql, "identities", "identity", names)
        return {i.identity: i for i in map(self._ident, rows)}

    def keys_of(self, identities: Collection[str]) -> dict[str, list[KeyState]]:
        found: dict[str, list[KeyState]] = {name: [] for name in identities}
        for key in sorted(
            map(self._key, rows_among(self.sql, "keys", "identity", identities)),
            key=lambda k: (k.created_at, k.key_id),
        ):
            found[key.identity].append(key)
        return found

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
        rows = self.sql.query(sql + f" ORDER BY {key_order(self.sql)}", params)
        return [self._key(r) for r in rows]

    def due_keys(self, now: datetime, limit: int = DUE_BATCH) -> list[KeyState]:
        rows = self.sql.query(
            "SELECT * FROM keys WHERE next_action_at IS NOT NULL AND next_action_at <= ? "
            "ORDER BY next_action_at LIMIT ?",
            [iso(now), limit],
        )
        return [self._key(r) for r in rows]

    def next_due(self, skip: Collection[str] = ()) -> datetime | None:
        """Earliest pending action time over keys and identities (for the scheduler),
        ignoring the keys in `skip` (the caller already knows when to look at them)."""
        idents = self.sql.execute(
            "SELECT MIN(rotation_due_at) FROM identities WHERE rotation_due_at IS NOT NULL"
        ).fetchone()[0]
        # walk the partial index from the earliest; at most len(skip) rows are passed over
        rows = self.sql.execute(
            "SELECT key_id, next_action_at FROM keys WHERE next_action_at IS NOT NULL "
            "ORDER BY next_action_at LIMIT ?",
            [len(skip) + 1],
        )
        keys = next((at for key_id, at in rows if key_id not in skip), None)
        times = [t for t in (idents, keys) if t]
        return parse_iso(min(times)) if times else None

    def identity(self, identity: str) -> IdentityState | None:
        rows = list(self.sql.query("SELECT * FROM identities WHERE identity = ?", [identity]))
        return self._ident(rows[0]) if rows else None

    def identity_sending(self, domain: str) -> IdentityState | None:
        """The identity that signs `domain`'s mail, if any."""
        # `!= ''` lets SQLite use the partial index identities_sending (it cannot tell
        # that a bound value is not ''); without it, ORDER BY identity walked every
        # identity in name order: a full scan per onboarded domain
        rows = list(
            self.sql.query(
                "SELECT * FROM identities WHERE sending_domain = ? AND sending_domain != '' "
                "AND retired_at IS NULL ORDER BY identity LIMIT 1",
                [domain],
            )
        )
        return self._ident(rows[0]) if rows else None

    def identity_covering(self, domain: str) -> IdentityState | None:
        parents = covered_by(domain)
        if not parents:
            return None
        marks = ",".join("?" * len(parents))
        rows = list(
            self.sql.query(
                f"SELECT * FROM identities WHERE sending_domain IN ({marks}) "
                "AND sending_domain != '' AND signing_pattern LIKE '*@*.%' "
                "AND retired_at IS NULL "
                "ORDER BY identity LIMIT 1",
                parents,
            )
        )
        return self._ident(rows[0]) if rows else None

    def identities_under(self, parents: set[str]) -> list[IdentityState]:
        # One pass over the live sending domains (a suffix match has no index): only
        # adding a `*@*.` pattern asks, once per batch.
        if not parents:
            return []
        found = [
            str(name)
            for name, sending in self.sql.execute(
                "SELECT identity, sending_domain FROM identities "
                "WHERE sending_domain != '' AND retired_at IS NULL"
            )
            if not parents.isdisjoint(covered_by(str(sending)))
        ]
        return [i for name in found if (i := self.identity(name)) is not None]

    def identities(self) -> list[IdentityState]:
        return [
            self._ident(r) for r in self.sql.query("SELECT * FROM identities ORDER BY identity")
        ]

    def identity_page(self, after: str, limit: int) -> list[IdentityState]:
        # keyset paging on the primary key: a page costs the same at any depth
        rows = self.sql.query(
            "SELECT * FROM identities WHERE identity > ? ORDER BY identity LIMIT ?", [after, limit]
        )
        return [self._ident(r) for r in rows]

    def senders(self, limit: int) -> list[IdentityState]:
        # the first live rows in key order: as cheap at a million identities as at ten
        rows = self.sql.query(
            "SELECT * FROM identities WHERE signing_pattern != '' AND retired_at IS NULL "
            "ORDER BY identity LIMIT ?",
            [limit],
        )
        return [self._ident(r) for r in rows]

    def esp_customers(self, esp_identity: str) -> list[IdentityState]:
        rows = self.sql.query(
            # `!= ''`: the partial index identities_esp, as in identity_sending
            "SELECT * FROM identities WHERE esp_identity = ? AND esp_identity != '' "
            "AND retired_at IS NULL ORDER BY identity",
            [esp_identity],
        )
        return [self._ident(r) for r in rows]

    def due_identities(self, now: datetime, limit: int = DUE_BATCH) -> list[IdentityState]:
        rows = self.sql.query(
            "SELECT * FROM identities WHERE rotation_due_at IS NOT NULL "
            "AND rotation_due_at <= ? ORDER BY rotation_due_at LIMIT ?",
            [iso(now), limit],
        )
        return [self._ident(r) for r in rows]

    def signing_rows(self) -> Iterator[SigningRow]:
        """Every signature the active keys make. One join per kind, read as tuples: the
        complete signing set of a million identities is read at start-up and by a target
        written for the first time. Each row's MAC is checked all the same: a row edited
        behind rotator's back never reaches a signer."""
        keys, idents = columns(self.sql, "keys"), columns(self.sql, "identities")
        pick = [keys.index(c) for c in SIGNING_KEY_COLUMNS]
        pattern = len(keys) + idents.index("signing_pattern")
        for second, row, _ in sealed_rows(self.sql, self.sealer):
            yield SigningRow._make([*(row[j] for j in pick), row[pattern], second])

    def signing_stream(self) -> Iterator[tuple[Any, ...]]:
        """Every signature in sender order, as SigningRow-shaped tuples, MACs not checked
        (check_signing does that): a million rows in bounded memory."""
        return ordered_rows(self.sql)

    def check_signing(self, executor: Executor | None, workers: int) -> Callable[[], None]:
        """Start checking the MAC of every row signing_stream reads; the returned call
        waits for it and raises StoreError for an edited row."""
        if self.sealer is None:
            return lambda: None
        return start_check(self.sql, self.sealer, executor, workers)

    def companions(self, identity: str) -> list[IdentityState]:
        """The dual-algorithm companions of an identity (retired ones too)."""
        rows = self.sql.query(
            "SELECT * FROM identities WHERE companion_of = ? AND companion_of != '' "
            "ORDER BY identity",
            [identity],
        )
        return [self._ident(r) for r in rows]

    def count_keys(self, state: str, up_to: int | None = None) -> int:
        # up_to: a tick weighing 200 replacements needs to know there are at least 800
        # active keys, not that there are a million (an O(all) walk of the state index)
        sql = "SELECT COUNT(*) FROM keys WHERE state = ?"
        if up_to is None:
            return int(self.sql.execute(sql, [state]).fetchone()[0])
        sql = "SELECT COUNT(*) FROM (SELECT 1 FROM keys WHERE state = ? LIMIT ?) AS counted"
        return int(self.sql.execute(sql, [state, up_to]).fetchone()[0])

    def scheduled_work(
        self, now: datetime, policy: str | None = None, after: datetime | None = None
    ) -> tuple[int, int]:
        """(revocations, replacements) due by `now` (and after `after`, of `policy`) that no
        emergency or removal set off: what a safety valve weighs. Both through the partial
        due indexes."""
        # a removed identity's keys were confirmed by the command that removed it
        revoke_sql = (
            "SELECT COUNT(*) FROM keys k JOIN identities i ON i.identity = k.identity "
            "WHERE k.next_action_at IS NOT NULL AND k.next_action_at <= ? "
            "AND k.next_action = 'revoke' AND k.compromised = 0 AND k.emergency_actor = '' "
            "AND i.retired_at IS NULL"
        )
        replace_sql = (
            "SELECT COUNT(*) FROM identities WHERE rotation_due_at IS NOT NULL "
            "AND rotation_due_at <= ? AND active_key IS NOT NULL AND emergency_actor = ''"
        )
        args: list[str] = [iso(now)]
        if after is not None:
            revoke_sql += " AND k.next_action_at > ?"
            replace_sql += " AND rotation_due_at > ?"
            args.append(iso(after))
        if policy is not None:
            revoke_sql += " AND k.policy = ?"
            replace_sql += " AND policy = ?"
            args.append(policy)
        revoke = self.sql.execute(revoke_sql, args).fetchone()[0]
        replace = self.sql.execute(replace_sql, args).fetchone()[0]
        return int(revoke), int(replace)

    def scheduled_policies(self, now: datetime) -> set[str]:
        """The policies of the work scheduled_work counts."""
        at = iso(now)
        keys = self.sql.execute(
            "SELECT DISTINCT policy FROM keys WHERE next_action_at IS NOT NULL "
            "AND next_action_at <= ? AND next_action = 'revoke'",
            [at],
        )
        idents = self.sql.execute(
            "SELECT DISTINCT policy FROM identities WHERE rotation_due_at IS NOT NULL "
            "AND rotation_due_at <= ? AND active_key IS NOT NULL",
            [at],
        )
        return {str(r[0]) for r in (*keys, *idents)}

    def live_key_ids(self) -> set[str]:
        """The ids of every key not destroyed (whose private key file must exist)."""
        return {
            str(r[0])
            for r in self.sql.execute("SELECT key_id FROM keys WHERE state != 'destroyed'")
        }

    def selectors(self, domain: str) -> set[str]:
        return {
            r["selector"]
            for r in self.sql.query("SELECT selector FROM keys WHERE domain = ?", [domain])
        }

    def monitoring_counts(self, per_identity: bool = False) -> StoreCounts:
        """Aggregates for the metrics endpoint, from one read snapshot. Live keys are read
        through the state index (destroyed keys pile up for ever and are only counted, from
        the index alone); identities and next times cost one scan and two index lookups."""
        live = ", ".join(f"'{s.value}'" for s in State if s is not State.DESTROYED)
        customer = ", ".join(f"'{c.value}'" for c in sorted(CUSTOMER_DNS))
        sql = self.sql
        with sql.reading():  # one snapshot, unless a caller's transaction is one
            keys = tuple(
                KeyCount(s, p, a, n, int(f), int(pk), int(d), parse_iso(o) if o else None)
                for s, p, a, n, f, pk, d, o in sql.execute(
                    "SELECT state, policy, COALESCE(next_action, ''), COUNT(*), "
                    "SUM(CASE WHEN attempts > 0 THEN 1 ELSE 0 END), SUM(parked), "
                    f"SUM(CASE WHEN drift != '' OR last_error_code = '{Reason.DRIFT}' "
                    "THEN 1 ELSE 0 END), "
                    "MIN(CASE WHEN state = 'active' THEN COALESCE(activated_at, since) END) "
                    f"FROM keys WHERE state IN ({live}) GROUP BY 1, 2, 3"
                )
            )
            idents = tuple(
                IdentityCount(m, r, n, int(w), int(a), int(b))
                for m, r, n, w, a, b in sql.execute(
                    "SELECT mode, role, COUNT(*), "
                    "SUM(CASE WHEN active_key IS NULL THEN 1 ELSE 0 END), "
                    f"SUM(CASE WHEN notice_code IN ({customer}) OR identity IN ("
                    f"SELECT identity FROM keys WHERE state IN ({live}) "
                    f"AND last_error_code IN ({customer})) THEN 1 ELSE 0 END), "
                    "SUM(CASE WHEN dns_problem_code IS NOT NULL THEN 1 ELSE 0 END) "
                    "FROM identities WHERE retired_at IS NULL GROUP BY 1, 2"
                )
            )
            destroyed = sql.execute("SELECT COUNT(*) FROM keys WHERE state = 'destroyed'")
            rotation = sql.execute(
                "SELECT MIN(rotation_due_at) FROM identities WHERE rotation_due_at IS NOT NULL"
            ).fetchone()[0]
            action = sql.execute(
                "SELECT MIN(next_action_at) FROM keys WHERE next_action_at IS NOT NULL"
            ).fetchone()[0]
            each: tuple[IdentityTimes, ...] = ()
            if per_identity:
                each = tuple(
                    IdentityTimes(d, p, parse_iso(a) if a else None, parse_iso(r) if r else None)
                    for d, p, a, r in sql.execute(
                        "SELECT i.domain, i.policy, COALESCE(k.activated_at, k.since), "
                        "i.rotation_due_at FROM identities i LEFT JOIN keys k "
                        "ON k.key_id = i.active_key WHERE i.retired_at IS NULL ORDER BY 1"
                    )
                )
            return StoreCounts(
                keys=keys,
                destroyed=int(destroyed.fetchone()[0]),
                identities=idents,
                next_rotation=parse_iso(rotation) if rotation else None,
                next_action=parse_iso(action) if action else None,
                per_identity=each,
            )

    def watch_keys(self, low: str, high: str | None) -> list[KeyState]:
        """Active and draining keys in [low, high) of the key id space, ordered by key id.
        The state is not read through its index, which would read every active key: a
        slice costs O(keys in it), on the primary key's range."""
        sql = "SELECT * FROM keys WHERE key_id >= ?"
        params = [low]
        if high is not None:
            sql += " AND key_id < ?"
            params.append(high)
        sql += f" AND {self.sql.unindexed('state')} IN ('active', 'draining') ORDER BY key_id"
        return [self._key(r) for r in self.sql.query(sql, params)]
