"""OpenDKIM: a KeyTable (`KeyTable file:<dir>/KeyTable`), a SigningTable
(`SigningTable refile:<dir>/SigningTable`, for its `*@domain` patterns) and one PEM file per
key (inline keys in the KeyTable only fit RSA-1024: its lines are read into 1024 bytes).
One OpenDKIM instance signs one algorithm (`SignatureAlgorithm` is global), so a target is
given the keys of its algorithm only. `MultipleSignatures yes` makes a customer's mail
carry both its own signature and the ESP's feedback-loop signature.

KeyTable line:      <key_id> <d= domain>:<selector>:<key_dir>/<key_id>.pem
SigningTable line:  <pattern> <key_id>
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from ...ports import SigningEntry, sender_order, signing_row
from .base import HEADER, OnceEach, PemKeys

KEY_TABLE = "KeyTable"
SIGNING_TABLE = "SigningTable"


def write_tables(
    rows: Iterable[tuple[Any, ...]],
    key_path: Callable[[str], str],
    key_table: Callable[[str], object],
    signing_table: Callable[[str], object],
) -> None:
    """Both tables in one pass over SigningRow-shaped tuples in sender order (a million
    rows streamed from the store, or a few entries): the KeyTable in the same order, each
    key once (an ESP key signs for many customers: one KeyTable line, many SigningTable
    lines)."""
    key_table(f"# {HEADER}\n")
    signing_table(f"# {HEADER}\n")
    once = OnceEach("opendkim")
    for row in rows:
        key_id, domain, selector, pattern = row[0], row[1], row[2], row[6]
        if once.first_key(row):
            key_table(f"{key_id} {domain}:{selector}:{key_path(key_id)}\n")
        signing_table(f"{pattern} {key_id}\n")


def render_tables(entries: Sequence[SigningEntry], key_path: Callable[[str], str]) -> list[str]:
    """[KeyTable, SigningTable] for a list of entries (write_tables over them, sorted)."""
    kt: list[str] = []
    st: list[str] = []
    write_tables(
        sorted(map(signing_row, entries), key=sender_order), key_path, kt.append, st.append
    )
    return ["".join(kt), "".join(st)]


def render_key_table(entries: Sequence[SigningEntry], key_dir: str) -> str:
    return render_tables(entries, lambda key_id: f"{key_dir}/{key_id}.pem")[0]


def render_signing_table(entries: Sequence[SigningEntry]) -> str:
    return render_tables(entries, str)[1]


class OpenDkimFormat(PemKeys):
    name = "opendkim"

    def tables(self, entries: Sequence[SigningEntry], key_dir: str) -> dict[str, bytes]:
        key_table, signing_table = render_tables(entries, lambda k: f"{key_dir}/{k}.pem")
        return {KEY_TABLE: key_table.encode(), SIGNING_TABLE: signing_table.encode()}

    table_names = (KEY_TABLE, SIGNING_TABLE)

    def write_tables(
        self, rows: Iterator[tuple[Any, ...]], key_dir: str, out: Sequence[Callable[[str], object]]
    ) -> None:
        write_tables(rows, lambda k: f"{key_dir}/{k}.pem", out[0], out[1])
