"""What a ChangeResourceRecordSets request carries: TXT values written as Route 53 wants
them (quoted character-strings of at most 255 octets each), and the changes cut into
ChangeBatch chunks within Route 53's limits. No I/O."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ....domain.errors import PublishError
from ....domain.reasons import Reason
from ....domain.record import split_strings

# Route 53's limits on one ChangeResourceRecordSets request; an UPSERT counts twice
# toward both (its old values are removed and its new ones added).
MAX_RECORDS = 1000  # ResourceRecord elements
MAX_CHARS = 32000  # characters of all Value elements
MAX_STRING = 255  # octets of one TXT character-string (else CharacterStringTooLong)

Change = dict[str, Any]  # one element of ChangeBatch.Changes, as boto3 takes it


def txt_value(name: str, text: str) -> str:
    """`text` as one TXT ResourceRecord value: `"part1" "part2"`, each part at most 255
    octets; a character Route 53 would have to escape is refused (no DKIM record has one)."""
    if any(not " " <= c <= "~" or c in '"\\' for c in text):
        raise PublishError(
            f"record {name} holds a quote, a backslash or a character that is not printable "
            "ASCII; a DKIM record has none",
            Reason.RECORD_INVALID,
        )
    value = " ".join(f'"{part.decode()}"' for part in split_strings(text))
    check_value(name, value)
    return value


def string_lengths(value: str) -> list[int]:
    """The octets of each character-string of a TXT value as Route 53 writes it: quoted
    strings (\\" and \\\\ one octet each, \\ddd one octet) or bare words, split by spaces."""
    out: list[int] = []
    i, n = 0, len(value)
    while i < n:
        if value[i] == " ":
            i += 1
            continue
        quoted = value[i] == '"'
        end = '"' if quoted else " "
        i += 1 if quoted else 0
        octets = 0
        while i < n and value[i] != end:
            if value[i] == "\\":
                i += 4 if value[i + 1 : i + 4].isdigit() else 2
            else:
                i += 1
            octets += 1
        i += 1  # past the closing quote or the space
        out.append(octets)
    return out


def check_value(name: str, value: str) -> None:
    """Refuse before sending what Route 53 would refuse (CharacterStringTooLong)."""
    for octets in string_lengths(value):
        if octets > MAX_STRING:
            raise PublishError(
                f"record {name}: a TXT character-string of {octets} octets (Route 53 takes "
                f"at most {MAX_STRING})",
                Reason.RECORD_INVALID,
            )


def upsert(name: str, ttl: int, value: str) -> Change:
    return {
        "Action": "UPSERT",
        "ResourceRecordSet": {
            "Name": name,
            "Type": "TXT",
            "TTL": ttl,
            "ResourceRecords": [{"Value": value}],
        },
    }


def delete(current: dict[str, Any]) -> Change:
    """Route 53 deletes a record set only when given exactly what it holds (TTL, values)."""
    return {"Action": "DELETE", "ResourceRecordSet": current}


def cost(change: Change) -> tuple[int, int]:
    """(ResourceRecord elements, characters of values) the change counts for."""
    records = change["ResourceRecordSet"].get("ResourceRecords", [])
    times = 2 if change["Action"] == "UPSERT" else 1
    return times * len(records), times * sum(len(r["Value"]) for r in records)


def chunks(changes: Iterable[Change]) -> list[list[Change]]:
    """Consecutive changes packed into as few requests as Route 53's limits allow."""
    out: list[list[Change]] = []
    current: list[Change] = []
    records = chars = 0
    for change in changes:
        r, c = cost(change)
        if r > MAX_RECORDS or c > MAX_CHARS:
            name = change["ResourceRecordSet"]["Name"]
            raise PublishError(
                f"record {name} is larger than one Route 53 request takes ({r} values, "
                f"{c} characters)",
                Reason.RECORD_INVALID,
            )
        if current and (records + r > MAX_RECORDS or chars + c > MAX_CHARS):
            out.append(current)
            current, records, chars = [], 0, 0
        current.append(change)
        records += r
        chars += c
    if current:
        out.append(current)
    return out


def last_per_name(names: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """One entry per owner name (lower case, absolute), the last given winning: Route 53
    refuses a batch that changes one record set twice, and each change replaces the whole
    RRset, so the last one is the outcome."""
    out: dict[str, Any] = {}
    for name, item in names:
        key = absolute(name)
        out.pop(key, None)  # keep the order of the last occurrence
        out[key] = item
    return out


def absolute(name: str) -> str:
    return name.rstrip(".").lower() + "."
