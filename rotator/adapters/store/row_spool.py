"""The signing set last written, kept in a private temp file for the next change to patch:
a million rows in about 100 MB of disk rather than of memory."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import Any

from ...domain.errors import SignerError

SEP = "\x1f"  # ASCII unit separator: never in a DNS name, a key id or a pattern
CHUNK = 8192  # rows written at once


class FileRows:
    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the buffer
        self._pending: list[str] = []

    def add(self, row: tuple[Any, ...]) -> None:
        for _ in self.tee(iter((row,))):
            pass

    def tee(self, rows: Iterator[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
        """Each row, kept as it passes (a million rows: no method call per row)."""
        pending, join, flush = self._pending, SEP.join, self._flush
        for row in rows:
            line = join(row[:7])
            if "\n" in line or line.count(SEP) != 6:
                raise SignerError(f"signing row {row[0]!r} holds a separator or a line break")
            pending.append(f"{line}{SEP}{int(row[7])}\n")
            if len(pending) >= CHUNK:
                flush()
            yield row

    def _flush(self) -> None:
        self.file.write("".join(self._pending).encode())
        self._pending.clear()

    def rows(self) -> Iterator[tuple[Any, ...]]:
        self._flush()
        self.file.flush()
        self.file.seek(0)
        for line in self.file:
            *fields, second = line.decode().rstrip("\n").split(SEP)
            yield (*fields, int(second))

    def close(self) -> None:
        self.file.close()
