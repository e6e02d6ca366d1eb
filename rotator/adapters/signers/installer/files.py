"""Writing a signer target's files: key files first, each to a temp file with a random
name opened O_CREAT|O_EXCL|O_NOFOLLOW, fsynced and renamed into place (an unchanged file is
left as it is), then the directory fsynced; only then the tables, the same way, so that a
table never names a missing key. Key files of keys/ that a complete write does not list
are overwritten with zeros and removed (or held and named back, for a later removal), a
partial write wipes only the ones it names. Every directory is opened with O_NOFOLLOW and
worked in with *at() calls: a link planted in the target directory is refused, never
written or wiped through. Files are owned by whoever runs this. Standard library only:
this package also runs on its own (see __init__)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import grp
import itertools
import os
import secrets
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:  # the installer also runs alone, maybe on an older Python
    # a table may come spooled in a file (a million lines) rather than as bytes
    Data = bytes | BinaryIO
CHUNK = 1 << 20
KEY_BATCH = 2048  # key files staged, synced and renamed at once
KEYS = "keys"


class InstallError(Exception):
    pass


def _safe(relative: str) -> Path:
    p = Path(relative)
    if p.is_absolute() or ".." in p.parts or not p.parts or relative != p.as_posix():
        raise InstallError(f"refusing path {relative!r}: it must stay inside the directory")
    return p


class _Dirs:
    """The target directory and those below it, each opened with O_NOFOLLOW and worked in
    with *at() calls: a symbolic link planted in it (keys -> /elsewhere) is refused, never
    written or wiped through."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)  # the configured path itself
        self.root = _open_dir(str(directory), None)
        self.fds: dict[Path, int] = {Path(): self.root}

    def of(self, relative: Path, mode: int = 0o600, gid: int = -1) -> int:
        """The directory holding `relative`, made on the way. Directories below the root
        open to the same group as the files in them (a key file its signer's group may
        read is no use in a directory that group cannot enter)."""
        return self.walk(relative.parts[:-1], mode, gid, create=True)

    def walk(
        self, parts: Sequence[str], mode: int = 0o600, gid: int = -1, create: bool = False
    ) -> int:
        fd, here = self.root, Path()
        for part in parts:
            here = here / part
            if here not in self.fds:
                try:
                    self.fds[here] = _open_dir(part, fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(part, 0o700, dir_fd=fd)
                    sub = self.fds[here] = _open_dir(part, fd)
                    setgid = os.fstat(self.root).st_mode & stat.S_ISGID
                    wanted = 0o700 | (0o050 if mode & 0o040 else 0)
                    try:
                        os.fchmod(sub, wanted | setgid)
                    except PermissionError:  # a sandbox forbidding set-id bits
                        os.fchmod(sub, wanted)
                    if gid >= 0:
                        os.fchown(sub, -1, gid)
            fd = self.fds[here]
        return fd

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)


def _open_dir(name: str, dir_fd: int | None) -> int:
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise InstallError(f"refusing {name}: a symbolic link or not a directory") from None
        raise


def _same(dfd: int, name: str, data: Data, mode: int, gid: int) -> bool:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or stat.S_IMODE(st.st_mode) != mode:
            return False
        if gid >= 0 and st.st_gid != gid:
            return False
        if isinstance(data, bytes):
            return fh.read() == data
        return _same_stream(fh, data)


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


def _stage(dirs: _Dirs, relative: str, data: Data, mode: int, gid: int) -> str | None:
    """A temp file beside `relative` holding `data`, to be renamed into place once it is
    on disk (its name in that directory); None if the file is there already."""
    path = _safe(relative)
    dfd = dirs.of(path, mode, gid)
    if _same(dfd, path.name, data, mode, gid):
        return None
    tmp = f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dfd)
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
        os.unlink(tmp, dir_fd=dfd)
        raise
    os.close(fd)
    return tmp


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _sync(dirs: _Dirs, staged: list[tuple[int, str, str]]) -> None:
    """Every staged file on disk before any is renamed: one syncfs(2) of the filesystem
    for a batch (a thousand fsyncs cost a thousand disk flushes), fsync each otherwise."""
    if len(staged) > 8:
        libc = ctypes.util.find_library("c")
        if libc is not None and ctypes.CDLL(libc, use_errno=True).syncfs(dirs.root) == 0:
            return
    for dfd, tmp, _ in staged:
        fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dfd)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _wipe(dfd: int, name: str) -> bool:
    """Overwrite with zeros, fsync and unlink: only a regular file with one link that this
    user owns is zeroed (a hard link to another's file, or a planted one, only loses its
    name here); a symbolic link is removed, never followed. False for a directory, which
    is left alone."""
    try:
        fd = os.open(name, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
    except OSError as exc:
        if exc.errno == errno.EISDIR:
            return False
        if exc.errno not in (errno.ELOOP, errno.ENXIO, errno.EACCES, errno.EPERM):
            raise
    else:
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_uid == os.geteuid():
                os.write(fd, b"\0" * st.st_size)
                os.fsync(fd)
        finally:
            os.close(fd)
    os.unlink(name, dir_fd=dfd)
    return True


def _put(
    dirs: _Dirs, files: Sequence[tuple[str, tuple[Data, int]]], gid: int, counts: dict[str, int]
) -> None:
    """Stage every file, put them on disk at once, then rename each into place."""
    staged: list[tuple[int, str, str]] = []
    for name, (data, mode) in files:
        tmp = _stage(dirs, name, data, mode, gid)
        if tmp is None:
            counts["unchanged"] += 1
        else:
            path = _safe(name)
            staged.append((dirs.of(path), tmp, path.name))
    _sync(dirs, staged)
    for dfd, tmp, name in staged:
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        counts["written"] += 1
    for dfd in {dirs.root, *(d for d, _, _ in staged)}:
        os.fsync(dfd)


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
    gone = _removable(remove or ())  # refused before anything is written
    dirs = _Dirs(directory)
    try:
        return _install(dirs, keys, tables, gid, manage_keys, remove, gone, held)
    finally:
        dirs.close()


def _install(
    dirs: _Dirs,
    keys: Mapping[str, tuple[bytes, int]] | Iterable[tuple[str, tuple[bytes, int]]],
    tables: Mapping[str, tuple[Data, int]],
    gid: int,
    manage_keys: bool,
    remove: list[str] | None,
    gone: set[str],
    held: list[str] | None,
) -> dict[str, int]:
    counts = {"written": 0, "unchanged": 0, "removed": 0}
    pairs = iter(sorted(keys.items())) if isinstance(keys, Mapping) else iter(keys)
    listed: set[str] = set()  # the key files' names in keys/
    while batch := list(itertools.islice(pairs, KEY_BATCH)):
        for name, (_, mode) in batch:
            if mode & 0o007:
                raise InstallError(f"key {name!r}: mode {mode:o} is open to others")
            listed.add(_safe(name).name)
        _put(dirs, batch, gid, counts)
    # keys first: a table never names a missing key
    _put(dirs, sorted(tables.items()), gid, counts)
    if not (manage_keys or remove):
        return counts
    try:
        kfd = dirs.walk((KEYS,))
    except FileNotFoundError:
        return counts
    if remove is not None:
        for name in sorted(gone - listed):
            with contextlib.suppress(FileNotFoundError):
                # removed only now that no table names it
                counts["removed"] += _wipe(kfd, name)
    else:
        # an iterator, not a list: a million names need not be held twice
        for name in (entry.name for entry in os.scandir(kfd)):
            if name not in listed and not name.startswith("."):
                if held is not None:
                    held.append(f"{KEYS}/{name}")  # its signer's old workers may read it
                    continue
                # a key that left this signer: its copy goes, zeroed
                counts["removed"] += _wipe(kfd, name)
            elif name.startswith(".") and name.endswith(".tmp"):
                _wipe(kfd, name)  # an interrupted earlier run's temp file
    if held is not None:
        held.sort()
    os.fsync(kfd)
    return counts


def _removable(names: Iterable[str]) -> set[str]:
    """The names in keys/ of the key files to wipe; InstallError for one outside it."""
    out = set()
    for name in sorted(names):
        path = _safe(name)
        if path.parent != Path(KEYS):
            raise InstallError(f"refusing to remove {name!r}: not a file in {KEYS}/")
        out.add(path.name)
    return out
