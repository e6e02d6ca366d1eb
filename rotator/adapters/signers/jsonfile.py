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

import json
from collections.abc import Sequence
from typing import Any

from ...domain.errors import SignerError
from ...ports import SigningEntry
from .base import (
    HEADER,
    SENDER_PATTERN,
    PemKeys,
    by_sender,
    key_file,
    plain_name,
    sender_domain,
)

SCHEMA = "rotator-signing/1"
DATA = "signing.json"
ALGORITHMS = {"rsa": "rsa-sha256", "ed25519": "ed25519-sha256"}


def _signature(e: SigningEntry, key_dir: str) -> dict[str, str]:
    if not key_dir.startswith("/"):
        raise SignerError(f"json: refusing key directory {key_dir!r}: not an absolute path")
    if e.algorithm not in ALGORITHMS:
        raise SignerError(f"json: key {e.key_id}: unknown algorithm {e.algorithm!r}")
    return {
        "d": plain_name("json", e.domain, "domain"),
        "s": plain_name("json", e.selector, "selector"),
        "algorithm": ALGORITHMS[e.algorithm],
        "key": f"{key_dir}/{key_file(e).rsplit('/', 1)[1]}",
        "key_id": e.key_id,
        "role": "esp" if e.second else "customer",
    }


def document(entries: Sequence[SigningEntry], key_dir: str) -> dict[str, Any]:
    senders: list[dict[str, Any]] = []
    for pattern, group in by_sender(entries).items():
        if not SENDER_PATTERN.fullmatch(pattern.lower()):
            raise SignerError(f"json: refusing signing pattern {pattern!r}: not *@domain")
        domain = sender_domain(pattern.lower())
        if any(s["pattern"] == pattern.lower() for s in senders):
            raise SignerError(f"json: signing pattern {pattern!r} is listed twice")
        senders.append(
            {
                "pattern": pattern.lower(),
                "domain": domain.lstrip("."),
                "subdomains": domain.startswith("."),
                "signatures": [_signature(e, key_dir) for e in group],
            }
        )
    return {"schema": SCHEMA, "comment": HEADER, "senders": senders}


def render_json(entries: Sequence[SigningEntry], key_dir: str) -> str:
    return json.dumps(document(entries, key_dir), indent=2, ensure_ascii=True) + "\n"


class JsonFormat(PemKeys):
    name = "json"

    def tables(self, entries: Sequence[SigningEntry], key_dir: str) -> dict[str, bytes]:
        return {DATA: render_json(entries, key_dir).encode()}
