"""rotator-signing/1: one JSON file (`signing.json`) for an in-house MTA, plus one PKCS#8 PEM
per key (RSA and Ed25519 alike). JSON Schema: rotator-signing-1.schema.json beside this file.

    {
      "schema": "rotator-signing/1",
      "comment": "Written by rotator. ...",
      "senders": [
        {
          "pattern": "*@acme.com",        # as in the SigningTable
          "domain": "acme.com",           # the pattern's domain, lower case
          "subdomains": false,            # true for "*@*.acme.com"
          "signatures": [
            {"d": "acme.com", "s": "r2026", "algorithm": "rsa-sha256",
             "key": "/var/lib/rotator-targets/json/keys/<key_id>.pem",
             "key_id": "<key_id>", "role": "customer"},
            {"d": "fbl.esp.example", "s": "fbl1", "algorithm": "ed25519-sha256", ...,
             "role": "esp"}
          ]
        }
      ]
    }

How a reader uses it: take the From header's domain (lower case). A sender with
"subdomains": false matches exactly its domain; one with true matches any name strictly below
its domain (never the domain itself). The exact match wins, else the longest matching
domain. Add every signature of that sender, in the listed order (the customer's own first,
"role": "esp" for the ESP's feedback-loop signature, with its own d=). No match: no signature.
Keys are read from "key" (absolute). The output is deterministic (no timestamps): the same
entries give the same bytes. A reader refuses a "schema" it does not know; a later
rotator-signing/2 is a new file name, so old readers never misread it. Values are validated
DNS names and paths; JSON escaping covers the rest.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from ...domain.errors import SignerError
from ...ports import SigningEntry, sender_order, signing_row
from .base import (
    HEADER,
    SENDER_PATTERN,
    OnceEach,
    PemKeys,
    plain_name,
    sender_domain,
)

SCHEMA = "rotator-signing/1"
DATA = "signing.json"
ALGORITHMS = {"rsa": "rsa-sha256", "ed25519": "ed25519-sha256"}


def _signature(row: tuple[Any, ...], key_dir: str) -> dict[str, str]:
    key_id, domain, selector, algorithm, _, _, _, second = row
    if algorithm not in ALGORITHMS:
        raise SignerError(f"json: key {key_id}: unknown algorithm {algorithm!r}")
    return {
        "d": plain_name("json", domain, "domain"),
        "s": plain_name("json", selector, "selector"),
        "algorithm": ALGORITHMS[algorithm],
        "key": f"{key_dir}/{key_id}.pem",
        "key_id": key_id,
        "role": "esp" if second else "customer",
    }


def write_json(rows: Iterable[tuple[Any, ...]], key_dir: str, out: Callable[[str], object]) -> None:
    """The document, a sender at a time, from SigningRow-shaped tuples in sender order (a
    million streamed from the store, or a few entries): what json.dumps(indent=2) writes
    for the whole document."""
    if not key_dir.startswith("/"):
        raise SignerError(f"json: refusing key directory {key_dir!r}: not an absolute path")
    out(f'{{\n  "schema": {json.dumps(SCHEMA)},\n  "comment": {json.dumps(HEADER)},\n')
    out('  "senders": [')
    once, first = OnceEach("json"), True
    for pattern, group in itertools.groupby(rows, key=lambda r: r[6]):
        if not SENDER_PATTERN.fullmatch(pattern.lower()):
            raise SignerError(f"json: refusing signing pattern {pattern!r}: not *@domain")
        once.pattern(pattern)
        lower = pattern.lower()
        domain = sender_domain(lower)
        sender = {
            "pattern": lower,
            "domain": domain.lstrip("."),
            "subdomains": domain.startswith("."),
            "signatures": [_signature(r, key_dir) for r in group],
        }
        text = json.dumps(sender, indent=2, ensure_ascii=True).replace("\n", "\n    ")
        out(("\n    " if first else ",\n    ") + text)
        first = False
    out("]\n}\n" if first else "\n  ]\n}\n")


def render_json(entries: Sequence[SigningEntry], key_dir: str) -> str:
    parts: list[str] = []
    write_json(sorted(map(signing_row, entries), key=sender_order), key_dir, parts.append)
    return "".join(parts)


class JsonFormat(PemKeys):
    name = "json"

    def tables(self, entries: Sequence[SigningEntry], key_dir: str) -> dict[str, bytes]:
        return {DATA: render_json(entries, key_dir).encode()}

    table_names = (DATA,)

    def write_tables(
        self, rows: Iterator[tuple[Any, ...]], key_dir: str, out: Sequence[Callable[[str], object]]
    ) -> None:
        write_json(rows, key_dir, out[0])
