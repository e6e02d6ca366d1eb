"""Reading a customers CSV: every problem is one line naming the file, the line and what to
do (spreadsheet exports with a byte order mark are fine; other encodings are not)."""

from __future__ import annotations

import csv
from pathlib import Path

from ..bootstrap import CSV_COLUMNS, CSV_REQUIRED, CustomerRow
from ..domain.errors import InputError

MAX_FIELD = 4096  # octets: no customer field is anywhere near this long
EXTRA = "\0extra"  # where DictReader puts the fields a row has beyond the header


def read_customer_csv(path: Path) -> list[CustomerRow]:
    expected = f"{','.join(CSV_REQUIRED)}[,{','.join(CSV_COLUMNS[len(CSV_REQUIRED) :])}]"
    try:
        # utf-8-sig: a spreadsheet's UTF-8 export starts with a byte order mark
        with path.open(newline="", encoding="utf-8-sig") as fh:
            lines = fh.read()
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x}); "
            "save it as 'CSV UTF-8'"
        ) from None
    reader = csv.DictReader(lines.splitlines(keepends=True), restkey=EXTRA)
    rows: list[CustomerRow] = []
    old_limit = csv.field_size_limit(MAX_FIELD)
    try:
        header = reader.fieldnames or []
        missing = set(CSV_REQUIRED) - set(header)
        if missing:
            raise InputError(
                f"{path}: header lacks {', '.join(sorted(missing))}; expected {expected}"
            )
        unknown = [h for h in header if h not in CSV_COLUMNS]
        if unknown:
            raise InputError(
                f"{path}: unknown column {unknown[0]!r} in the header; expected {expected}"
            )
        for r in reader:
            where = f"{path.name} line {reader.line_num}"
            if EXTRA in r:
                raise InputError(
                    f"{where}: {len(header) + len(r[EXTRA])} fields but the header has "
                    f"{len(header)}; quote fields that contain commas"
                )
            rows.append(CustomerRow(**{c: r.get(c) or "" for c in CSV_COLUMNS}, where=where))
    except csv.Error as exc:
        # the row being read when the error struck starts on the line after the last one read
        raise InputError(f"{path.name} line {reader.line_num + 1}: {exc}") from None
    finally:
        csv.field_size_limit(old_limit)
    if not rows:
        raise InputError(f"{path}: no customer rows")
    return rows
