"""The complete signing set at a million identities: read as a stream in the order a signer
table lists it (sorted by the database, in bounded memory), and its rows' MACs checked apart, by
worker processes when there are some (the check is most of the read's cost).

A table rendered from the stream and the check must see the same database: the caller
takes `data_version` before and after both, and a commit by anyone in between means the
whole thing is done again (see app/signing_set.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from typing import Any

from ...domain.errors import StoreError
from .connection import Sql, columns
from .seal import Sealer, edited

# The two joins of the signing set: a key signs under its own identity's pattern; an ESP
# key signs, second, for each customer that carries its signature (the condition on ''
# lets SQLite walk the partial index of ESP customers; a removed customer's mail is
# nobody's to sign any more).
JOINS = (
    (False, "i.identity = k.identity AND i.role != 'esp'"),
    (True, "i.esp_identity = k.identity AND i.esp_identity != '' AND i.retired_at IS NULL"),
)

# SigningRow's fields, in its order
_COLUMNS = "k.key_id, k.domain, k.selector, k.algorithm, k.zone, k.record_name, i.signing_pattern"

# The sender order of every table (ports.sender_order): pattern, the customer's own
# signature before the ESP's, domain, selector, key id. SQLite's BINARY collation compares
# UTF-8 bytes, as PostgreSQL's "C" (every text column's there) does: the order in which
# Python compares str.
_ORDERED = (
    " UNION ALL ".join(
        f"SELECT {_COLUMNS}, {int(second)} FROM keys k JOIN identities i ON {join} "
        "WHERE k.state = 'active'"
        for second, join in JOINS
    )
    + " ORDER BY 7, 8, 2, 3, 1"
)

# a worker's share of the check: enough parts that two workers finish together
PARTS_PER_WORKER = 4
# below this many keys the check runs here: starting worker processes would
# cost more than it saves
PARALLEL_FROM = 50_000


def ordered_rows(sql: Sql) -> Iterator[tuple[Any, ...]]:
    """Every signature, as SigningRow-shaped tuples (second as 0/1) in sender order. No
    MAC is checked here: start_check() does that for the same rows."""
    return iter(sql.stream(_ORDERED))


def check_part(reader: Callable[[], Sql], key: bytes, low: Any, high: Any) -> str | None:
    """Check the MAC of every row the signing set reads for the active keys in the
    range [low, high] of the keys' row order: None, or the refusal. Runs in a worker
    process (its own read-only connection)."""
    sealer = Sealer(key)
    sql = reader()
    try:
        return _check(sql, sealer, low, high)
    finally:
        sql.close()


def sealed_rows(
    sql: Sql, sealer: Sealer | None, low: Any = None, high: Any = None
) -> Iterator[tuple[bool, tuple[Any, ...], int]]:
    """(second, the joined key + identity row, the number of key columns) for every
    signature (of the active keys in [low, high] of the row order, if given), each row's
    MAC checked: StoreError for a row edited behind rotator's back."""
    keys, idents = columns(sql, "keys"), columns(sql, "identities")
    n = len(keys)
    key_ok = ident_ok = None
    if sealer is not None:
        key_ok = sealer.row_check("keys", keys)
        ident_ok = sealer.row_check("identities", idents, offset=n)
    cols = ", ".join([f"k.{c}" for c in keys] + [f"i.{c}" for c in idents])
    span = "" if low is None else f" AND k.{sql.row_order('key_id')} BETWEEN ? AND ?"
    for second, join in JOINS:
        text = f"SELECT {cols} FROM keys k JOIN identities i ON {join} WHERE k.state = 'active'"
        for row in sql.stream(text + span, [] if low is None else [low, high]):
            if key_ok is not None and not key_ok(row):
                raise edited("keys", row[0])
            if ident_ok is not None and not ident_ok(row):
                raise edited("identities", row[n])
            yield second, row, n


def _check(sql: Sql, sealer: Sealer, low: Any, high: Any) -> str | None:
    try:
        for _ in sealed_rows(sql, sealer, low, high):
            pass
    except StoreError as exc:  # a worker's answer: the refusal's text
        return str(exc)
    return None


def start_check(
    sql: Sql, sealer: Sealer, executor: Executor | None, workers: int
) -> Callable[[], None]:
    """Start checking that every row the signing set reads carries its MAC: spread over
    the worker processes if there is a pool (while the caller renders its tables), here
    and now otherwise. The returned call waits and raises StoreError (the first refusal)."""
    parts = []
    if executor is not None and workers >= 2:
        parts = sql.key_parts(workers * PARTS_PER_WORKER, PARALLEL_FROM)
    if executor is None or not parts:
        for _ in sealed_rows(sql, sealer):  # raises the refusal itself
            pass
        return lambda: None
    futures = [
        executor.submit(check_part, sql.reader, sealer.key, low, high) for low, high in parts
    ]

    def wait() -> None:
        problems = [p for p in (f.result() for f in futures) if p]
        if problems:
            raise StoreError(problems[0])

    return wait
