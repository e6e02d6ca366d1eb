"""DKIM key records (RFC 6376 section 3.6.1, RFC 8463 for ed25519): build, split, parse."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import RecordError

MAX_STRING = 255  # octets in one DNS character-string (RFC 1035 3.3)
REVOKED_P = ""

_TAG_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_FWS = re.compile(r"[ \t\r\n]+")
_B64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")

KEY_TYPES = {"rsa": "rsa", "ed25519": "ed25519"}


@dataclass(frozen=True)
class RecordTags:
    """Optional tags a policy may set (see README: policy reference)."""

    flags: tuple[str, ...] = ()  # t=  ("y" test mode, "s" no subdomains)
    hashes: tuple[str, ...] = ()  # h=  ("sha256", "sha1")
    service: str = ""  # s=  ("email" or "*")
    notes: str = ""  # n=


def build_record(algorithm: str, public_key_b64: str, tags: RecordTags = RecordTags()) -> str:
    """The TXT text for a key: v=DKIM1 first (RFC 6376 requires it first when present)."""
    if algorithm not in KEY_TYPES:
        raise RecordError(f"unknown key algorithm {algorithm!r}: use rsa or ed25519")
    parts = ["v=DKIM1", f"k={KEY_TYPES[algorithm]}"]
    if tags.hashes:
        parts.append("h=" + ":".join(tags.hashes))
    if tags.service:
        parts.append(f"s={tags.service}")
    if tags.flags:
        parts.append("t=" + ":".join(tags.flags))
    if tags.notes:
        parts.append("n=" + _qp_notes(tags.notes))
    parts.append(f"p={public_key_b64}")
    return "; ".join(parts)


def revoked_record() -> str:
    """An empty p= means the key is revoked (RFC 6376 3.6.1)."""
    return "v=DKIM1; p="


def split_strings(text: str) -> list[bytes]:
    """Split TXT text into character-strings of at most 255 octets (joined on read)."""
    data = text.encode("ascii")
    if not data:
        return [b""]
    return [data[i : i + MAX_STRING] for i in range(0, len(data), MAX_STRING)]


def join_strings(strings: list[bytes] | tuple[bytes, ...]) -> str:
    """Receivers concatenate a TXT RR's strings with no separator (RFC 6376 3.6.2.2)."""
    try:
        return b"".join(strings).decode("ascii")
    except UnicodeDecodeError as exc:
        raise RecordError(f"TXT record is not ASCII: {exc}") from exc


def parse_record(text: str) -> dict[str, str]:
    """Parse a DKIM key record's tag-list; values have folding whitespace removed from p=.

    Raises RecordError for a syntax error, a duplicate tag, a v= that is not first or not
    DKIM1, or a missing p=.
    """
    tags: dict[str, str] = {}
    specs = text.split(";")
    if specs and specs[-1].strip() == "":
        specs = specs[:-1]  # a trailing ";" is allowed
    for i, spec in enumerate(specs):
        if "=" not in spec:
            raise RecordError(f"tag {i + 1} {spec.strip()!r} has no '='")
        name, value = spec.split("=", 1)
        name = name.strip()
        value = value.strip()
        if not _TAG_NAME.match(name):
            raise RecordError(f"invalid tag name {name!r}")
        if name in tags:
            raise RecordError(f"duplicate tag {name}=")
        if name == "v" and i != 0:
            raise RecordError("v= must be the first tag")
        if name == "p":
            value = _FWS.sub("", value)
            if not _B64.match(value):
                raise RecordError("p= is not base64")
        tags[name] = value
    if tags.get("v", "DKIM1") != "DKIM1":
        raise RecordError(f"v={tags['v']} is not DKIM1")
    if "p" not in tags:
        raise RecordError("p= tag is missing")
    return tags


def is_revoked(tags: dict[str, str]) -> bool:
    return tags.get("p") == REVOKED_P


def records_match(expected: str, observed: str) -> bool:
    """Same tags with the same values (order and whitespace do not matter). The same text
    is read once: a server serving what was published is the usual case."""
    try:
        if expected == observed:
            return bool(parse_record(expected))
        return parse_record(expected) == parse_record(observed)
    except RecordError:
        return False


def keys_match(expected: str, observed: str) -> bool:
    """Same key type (k= defaults to rsa) and the same non-empty p=."""
    try:
        a, b = parse_record(expected), parse_record(observed)
    except RecordError:
        return False
    return bool(a["p"]) and a["p"] == b["p"] and a.get("k", "rsa") == b.get("k", "rsa")


def _qp_notes(notes: str) -> str:
    # n= is dkim-quoted-printable: encode ';', '=', whitespace and non-printables.
    out = []
    for ch in notes:
        o = ord(ch)
        if ch in ";= \t" or o < 0x21 or o > 0x7E:
            out.append("".join(f"={b:02X}" for b in ch.encode("utf-8")))
        else:
            out.append(ch)
    return "".join(out)
