"""Reading a bundle: version 4 (what rotator sends) a JSON line at a time, installed as it
comes; versions 1 to 3 as one JSON document. See the package's docstring."""

from __future__ import annotations

import base64
import binascii
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .files import InstallError, install

# 2: a bundle may be partial ("remove"); 3: a complete one may hold the key files it drops;
# 4: the same, streamed a line at a time
VERSION = 3
STREAM_VERSION = 4
MAX_LINE = 4 << 20  # a key file, a chunk of a table, or a list of names to remove


def _decode(entries: Any, what: str) -> dict[str, tuple[bytes, int]]:
    if not isinstance(entries, dict):
        raise InstallError(f"bundle {what}: not an object")
    return dict(_spec(name, spec, what) for name, spec in entries.items())


def _spec(name: Any, spec: Any, what: str) -> tuple[str, tuple[bytes, int]]:
    # a key file is nobody else's business; a table (names and paths only) may be read
    try:
        data = base64.b64decode(spec["data"], validate=True)
        mode = int(spec["mode"], 8)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise InstallError(f"bundle {what} {name!r}: {exc}") from None
    if not isinstance(name, str):
        raise InstallError(f"bundle {what} {name!r}: not a path")
    if mode & (0o007 if what == "key" else 0o003):
        raise InstallError(f"bundle {what} {name!r}: mode {mode:o} is open to others")
    return name, (data, mode)


def _options(bundle: dict[str, Any], remove: Any, version: int) -> tuple[bool, bool]:
    """(manage_keys, hold) of a bundle, checked with its remove list."""
    if remove is not None and (
        version == 1 or not isinstance(remove, list) or not all(isinstance(n, str) for n in remove)
    ):
        raise InstallError("bundle remove: a version 2 bundle's list of key file names")
    hold = bundle.get("hold", False)
    if hold not in (True, False) or (hold and (version < VERSION or remove is not None)):
        raise InstallError("bundle hold: true or false, in a complete version 3 bundle")
    manage = bundle.get("manage_keys", True)
    if manage not in (True, False):
        raise InstallError("bundle manage_keys: true or false")
    return manage, hold


def _line(stream: BinaryIO) -> dict[str, Any]:
    raw = stream.readline(MAX_LINE)
    if not raw.endswith(b"\n"):
        raise InstallError("bundle ended early (or a line is longer than 4 MiB): nothing changed")
    try:
        line = json.loads(raw)
    except ValueError as exc:
        raise InstallError(f"bundle line: {exc}") from None
    if not isinstance(line, dict):
        raise InstallError("bundle line: not an object")
    return line


def read_stream(
    directory: Path, head: dict[str, Any], stream: BinaryIO, group: str = ""
) -> dict[str, Any]:
    """Install a version 4 bundle (see the module docstring) from `stream`, whose header
    line `head` was read: tables spooled to private temp files, key files installed a batch
    at a time as they arrive, the tables only once the end line confirmed the whole."""
    line = _line(stream)
    remove: list[str] | None = None
    while "remove" in line:
        if not isinstance(line["remove"], list):
            raise InstallError("bundle remove: a list of key file names")
        remove = [*(remove or []), *line["remove"]]
        line = _line(stream)
    manage, hold = _options(head, remove, STREAM_VERSION)
    tables: dict[str, tuple[BinaryIO, int]] = {}
    while "table" in line:
        name, (data, mode) = _spec(line["table"], line, "table")
        if name not in tables:
            tables[name] = (tempfile.TemporaryFile(), mode)  # noqa: SIM115 - closed below
        tables[name][0].write(data)
        line = _line(stream)

    def keys(line: dict[str, Any]) -> Iterator[tuple[str, tuple[bytes, int]]]:
        count = 0
        while "key" in line:
            yield _spec(line["key"], line, "key")
            count += 1
            line = _line(stream)
        if line.get("end") != {"tables": len(tables), "keys": count}:
            raise InstallError(
                f"bundle end {line.get('end')!r}: expected {len(tables)} tables and "
                f"{count} keys; no table was installed and nothing wiped"
            )

    held: list[str] | None = [] if hold else None
    try:
        out: dict[str, Any] = dict(
            install(directory, keys(line), tables, group, manage, remove=remove, held=held)
        )
    finally:
        for spool, _ in tables.values():
            spool.close()
    if held is not None:
        out["held"] = held
    return out


def apply_bundle(directory: Path, bundle: dict[str, Any], group: str = "") -> dict[str, Any]:
    """Install `bundle` into `directory` (see the module docstring)."""
    version = bundle.get("version")
    if version not in (1, 2, VERSION):
        raise InstallError(f"bundle version {version!r}: this installer reads 1 to 3")
    keys = _decode(bundle.get("keys", {}), "key")
    tables = _decode(bundle.get("tables", {}), "table")
    remove = bundle.get("remove")
    manage, hold = _options(bundle, remove, version)
    held: list[str] | None = [] if hold else None
    out: dict[str, Any] = dict(
        install(directory, keys, tables, group, manage_keys=manage, remove=remove, held=held)
    )
    if held is not None:
        out["held"] = held
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python3 -I INSTALLER DIRECTORY < bundle", file=sys.stderr)
        return 2
    os.umask(0o077)
    stdin = sys.stdin.buffer
    try:
        first = stdin.readline(MAX_LINE)
        try:
            head = json.loads(first)
        except ValueError:  # a whole bundle of an earlier version, written over lines
            head = None
        if isinstance(head, dict) and head.get("version") == STREAM_VERSION:
            counts = read_stream(Path(argv[1]), head, stdin)
        else:
            counts = apply_bundle(Path(argv[1]), json.loads(first + stdin.read()))
    except (InstallError, OSError, ValueError, KeyError) as exc:
        print(f"install: {argv[1]}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(counts))
    return 0
