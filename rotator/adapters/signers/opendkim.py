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

from collections.abc import Sequence

from ...ports import SigningEntry
from .base import HEADER, PemKeys, by_sender, unique_keys

KEY_TABLE = "KeyTable"
SIGNING_TABLE = "SigningTable"


def render_key_table(entries: Sequence[SigningEntry], key_dir: str) -> str:
    # An ESP key signs for many customers: one KeyTable line, many SigningTable lines.
    lines = [
        f"{e.key_id} {e.domain}:{e.selector}:{key_dir}/{e.key_id}.pem\n"
        for e in unique_keys(entries)
    ]
    return f"# {HEADER}\n" + "".join(lines)


def render_signing_table(entries: Sequence[SigningEntry]) -> str:
    lines = [
        f"{e.signing_pattern} {e.key_id}\n" for group in by_sender(entries).values() for e in group
    ]
    return f"# {HEADER}\n" + "".join(lines)


class OpenDkimFormat(PemKeys):
    name = "opendkim"

    def tables(self, entries: Sequence[SigningEntry], key_dir: str) -> dict[str, bytes]:
        return {
            KEY_TABLE: render_key_table(entries, key_dir).encode(),
            SIGNING_TABLE: render_signing_table(entries).encode(),
        }
