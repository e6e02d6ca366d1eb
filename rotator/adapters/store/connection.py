"""A database connection as the store's shared code sees it, whichever the database (SQLite
or PostgreSQL): statements with `?` placeholders, rows as tuples or dicts, big scans
streamed in bounded memory, several statements read as one snapshot, and the few places
where the two dialects differ. The hash chain, the MACs, the fold, the reads and the audit
are written once against this; each adapter keeps its own SQL dialect behind it."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

Params = Sequence[Any]


class Cursor(Protocol):
    @property
    def description(self) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def close(self) -> None: ...

    def __iter__(self) -> Iterator[Any]: ...


class Sql(Protocol):
    # what error lines and info() name: the file, or the URL without its password
    where: str
    # what the database raises for a UNIQUE constraint (a stream version, a selector)
    integrity_error: type[Exception]
    # Rows per statement when the log is read page by page (None: one statement streams
    # it): a page holds nothing open between two reads, whatever the caller does meanwhile.
    page: int | None
    # opens a read-only connection to the same database in another process (picklable)
    reader: Callable[[], Sql]
    # names looked up by one `among` query (SQLite binds one parameter per name)
    names_per_query: int

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        """A statement whose result is small (or read at once)."""
        ...

    def query(self, sql: str, params: Params = ()) -> Iterator[dict[str, Any]]:
        """Rows as dicts by column name."""
        ...

    def stream(self, sql: str, params: Params = ()) -> Cursor:
        """A scan of up to millions of rows, in bounded memory on both sides."""
        ...

    def reading(self) -> AbstractContextManager[None]:
        """The statements inside read one snapshot (nothing if a transaction is open)."""
        ...

    def among(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """`column` is one of `values`: the condition and its parameters."""
        ...

    def data_version(self) -> int:
        """A number that changes whenever a write to the projection commits."""
        ...

    def unindexed(self, column: str) -> str:
        """`column` written so that the planner does not walk its index (a filter on a
        range read through another one)."""
        ...

    def row_order(self, pk: str) -> str:
        """A column that orders a table's rows as they were stored, for `pk`'s table."""
        ...

    def key_parts(self, count: int, least: int) -> list[tuple[Any, Any]]:
        """`count` ranges [low, high] of row_order("key_id") covering the keys table, for
        checking it in parallel; [] if it holds fewer than about `least` rows."""
        ...

    def close(self) -> None: ...


def columns(sql: Sql, table: str) -> list[str]:
    """A table's columns, in the order `SELECT *` gives them."""
    cursor = sql.execute(f"SELECT * FROM {table} LIMIT 0")
    return [str(d[0]) for d in cursor.description]


def amongs(sql: Sql, column: str, values: Collection[str]) -> Iterator[tuple[str, list[Any]]]:
    """`column` is one of `values`: the conditions and their parameters, each for as many
    names as one statement takes (sql.names_per_query)."""
    names = sorted(set(values))
    size = sql.names_per_query
    for i in range(0, len(names), size):
        yield sql.among(column, names[i : i + size])


def rows_among(
    sql: Sql, table: str, column: str, values: Collection[str]
) -> Iterator[dict[str, Any]]:
    """The rows of `table` whose `column` is one of `values`, a statement per chunk."""
    for among, params in amongs(sql, column, values):
        yield from sql.query(f"SELECT * FROM {table} WHERE {among}", params)
