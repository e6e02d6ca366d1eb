#!/usr/bin/python3
"""Install a signer target's files: rotator uses it in-process for a local target, and the
same file runs on its own (Python 3 standard library only) as the installer of a target
that must be written as the signer's user or on another host:

    rotator ... | python3 install.py /var/lib/opendkim/rotator

It reads a bundle on stdin. Version 4 (what rotator sends) comes a JSON line at a time
and is installed as it comes, so that no part of it is ever whole in memory (a million key
files): {"version": 4, "manage_keys": bool, "hold": bool}, then {"remove": [paths]} lines
(a partial bundle), {"table": path, "mode": "0640", "data": base64} lines (a table's
chunks in order), {"key": path, "mode": "0600", "data": base64} lines, and last
{"end": {"tables": n, "keys": n}}: a stream cut short (no end, or other counts) installs no
table and wipes nothing. Earlier versions are one JSON document, as follows.

One JSON bundle: {"version": 1, "keys": {path: {"data": base64,
"mode": "0600"}}, "tables": {...}} with paths relative to the directory ("keys/ab12.pem",
"KeyTable"). Key files are written first, each to a temp file with a random name opened
O_CREAT|O_EXCL|O_NOFOLLOW, fsynced and renamed into place (an unchanged file is left as
it is), then the directory is fsynced; only then the tables, the same way. Key files of
keys/ the bundle does not list are overwritten with zeros and removed. A version 2 bundle
may be partial, with "remove": [paths]: its key files are added, the listed ones wiped,
and every other key file is left as it is. A version 3 bundle may be complete with
"hold": true: key files it does not list stay (a signer's old workers may still read them)
and are named back in "held", for a later partial bundle to remove. Files are owned
by whoever runs this (run it as the signer's user: OpenDKIM wants its keys owned by itself
or root). It prints one JSON line: {"written": n, "unchanged": n, "removed": n} (and
"held": [names] for a held bundle), and exits 1 with one line on stderr if anything fails.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import ctypes.util
import grp
import itertools
import json
import os
import secrets
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:  # the installer also runs alone, maybe on an older Python
    # a table may come spooled in a file (a million lines) rather than as bytes
    Data = bytes | BinaryIO
CHUNK = 1 << 20
KEY_BATCH = 2048  # key files staged, synced and renamed at once

# 2: a bundle may be partial ("remove"); 3: a complete one may hold the key files it drops;
# 4: the same, streamed a line at a time
VERSION = 3
STREAM_VERSION = 4
MAX_LINE = 4 << 20  # a key file, a chunk of a table, or a list of names to remove
KEYS = "keys"


class InstallError(Exception):
    pass


def _safe(relative: str) -> Path:
    p = Path(relative)
    if p.is_absolute() or ".." in p.parts or not p.parts or relative != p.as_posix():
        raise InstallError(f"refusing path {relative!r}: it must stay inside the directory")
    return p


def _same(path: Path, data: Data, mode: int, gid: int) -> bool:
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or stat.S_IMODE(st.st_mode) != mode:
            return False
        if gid >= 0 and st.st_gid != gid:
            return False
        with open(path, "rb") as fh:
            if isinstance(data, bytes):
                return fh.read() == data
            return _same_stream(fh, data)
    except OSError:
        return False


def _same_stream(fh: BinaryIO, data: BinaryIO) -> bool:
    """Whether a spooled table holds what the file does, a chunk at a time (rewound)."""
    data.seek(0)
    try:
        while True:
            a, b = fh.read(CHUNK), data.read(CHUNK)
            if a != b:
                return False
            if not a:
                return True
    finally:
        data.seek(0)


def _subdir(directory: Path, path: Path, mode: int, gid: int) -> None:
    """Directories below `directory` open to the same group as the files in them (a key
    file its signer's group may read is no use in a directory that group cannot enter)."""
    for parent in reversed(path.relative_to(directory).parents):
        sub = directory / parent
        if sub == directory or sub.is_dir():
            continue
        sub.mkdir()
        setgid = os.stat(directory).st_mode & stat.S_ISGID
        wanted = 0o700 | (0o050 if mode & 0o040 else 0)
        try:
            os.chmod(sub, wanted | setgid)
        except PermissionError:  # a sandbox forbidding set-id bits (RestrictSUIDSGID)
            os.chmod(sub, wanted)
        if gid >= 0:
            os.chown(sub, -1, gid)


def _stage(directory: Path, relative: str, data: Data, mode: int, gid: int) -> Path | None:
    """A temp file beside directory/relative holding `data`, to be renamed into place once
    it is on disk; None if the file is there already."""
    path = directory / _safe(relative)
    if _same(path, data, mode, gid):
        return None
    _subdir(directory, path, mode, gid)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        if gid >= 0:
            os.fchown(fd, -1, gid)
        os.fchmod(fd, mode)
        if isinstance(data, bytes):
            _write_all(fd, data)
        else:
            data.seek(0)
            while chunk := data.read(CHUNK):
                _write_all(fd, chunk)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _sync(directory: Path, staged: list[Path]) -> None:
    """Every staged file on disk before any is renamed: one syncfs(2) of the filesystem
    for a batch (a thousand fsyncs cost a thousand disk flushes), fsync each otherwise."""
    if len(staged) > 8:
        libc = ctypes.util.find_library("c")
        if libc is not None:
            fd = os.open(directory, os.O_RDONLY)
            try:
                if ctypes.CDLL(libc, use_errno=True).syncfs(fd) == 0:
                    return
            finally:
                os.close(fd)
    for tmp in staged:
        fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _wipe(path: Path) -> None:
    fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    try:
        os.write(fd, b"\0" * os.fstat(fd).st_size)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.unlink(path)


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


def _put(
    directory: Path, files: Sequence[tuple[str, tuple[Data, int]]], gid: int, counts: dict[str, int]
) -> None:
    """Stage every file, put them on disk at once, then rename each into place."""
    staged: list[tuple[Path, Path]] = []
    for name, (data, mode) in files:
        tmp = _stage(directory, name, data, mode, gid)
        if tmp is None:
            counts["unchanged"] += 1
        else:
            staged.append((tmp, directory / _safe(name)))
    _sync(directory, [tmp for tmp, _ in staged])
    for tmp, path in staged:
        os.replace(tmp, path)
        counts["written"] += 1
    _fsync_dir(directory)
    for sub in {(directory / _safe(n)).parent for n, _ in files}:
        if sub != directory:
            _fsync_dir(sub)


def install(
    directory: Path,
    keys: Mapping[str, tuple[bytes, int]] | Iterable[tuple[str, tuple[bytes, int]]],
    tables: Mapping[str, tuple[Data, int]],
    group: str = "",
    manage_keys: bool = True,
    remove: list[str] | None = None,
    held: list[str] | None = None,
) -> dict[str, int]:
    """Key files, then tables, each (data, mode) by relative path; see the docstring.
    Unless `manage_keys` is false (a target whose tables name key files kept elsewhere),
    keys/ holds exactly the bundle's keys: the others are wiped, or, given a `held`
    list, kept and named in it. Otherwise a partial bundle
    (`remove` given) adds its keys and wipes only the key files `remove` names: one
    activation among a million keys rewrites what changed, not every key file. `keys`
    may come as (name, (data, mode)) pairs, a batch at a time (a million key files are
    never all in memory)."""
    gid = grp.getgrnam(group).gr_gid if group else -1
    directory.mkdir(parents=True, exist_ok=True)
    counts = {"written": 0, "unchanged": 0, "removed": 0}
    gone = _removable(directory, remove or ())  # refused before anything is written
    pairs = iter(sorted(keys.items())) if isinstance(keys, Mapping) else iter(keys)
    listed: set[str] = set()  # the key files' names
    while batch := list(itertools.islice(pairs, KEY_BATCH)):
        for name, (_, mode) in batch:
            if mode & 0o007:
                raise InstallError(f"key {name!r}: mode {mode:o} is open to others")
            listed.add(name)
        _put(directory, batch, gid, counts)
    # keys first: a table never names a missing key
    _put(directory, sorted(tables.items()), gid, counts)
    key_dir = directory / KEYS
    if remove is not None:
        for path in sorted(gone - {directory / _safe(n) for n in listed}):
            if path.is_file() and not path.is_symlink():
                _wipe(path)  # removed only now that no table names it
                counts["removed"] += 1
        if remove:
            _fsync_dir(key_dir)
    elif manage_keys and key_dir.is_dir():
        names = {(directory / _safe(n)).name for n in listed}
        for p in sorted(key_dir.iterdir()):
            if p.name not in names and not p.name.startswith("."):
                if held is not None:
                    held.append(f"{KEYS}/{p.name}")  # its signer's old workers may read it
                    continue
                _wipe(p)  # a key that left this signer: its copy goes, zeroed
                counts["removed"] += 1
            elif p.name.startswith(".") and p.name.endswith(".tmp"):
                _wipe(p)  # an interrupted earlier run's temp file
        _fsync_dir(key_dir)
    return counts


def _removable(directory: Path, names: Iterable[str]) -> set[Path]:
    """The key files named to be wiped; InstallError for a name outside keys/."""
    out = set()
    for name in sorted(names):
        path = directory / _safe(name)
        if path.parent != directory / KEYS:
            raise InstallError(f"refusing to remove {name!r}: not a file in {KEYS}/")
        out.add(path)
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: install.py DIRECTORY < bundle.json", file=sys.stderr)
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


if __name__ == "__main__":
    sys.exit(main(sys.argv))
