"""SQLite's errors, told to an operator: what happened and what they can do about it."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path


def read_only_fs(path: Path) -> bool:
    """True if `path` (or, when it does not exist, its directory) is on a read-only mount."""
    try:
        return bool(os.statvfs(path if path.exists() else path.parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def db_hint(exc: sqlite3.Error, path: Path | None = None) -> str:
    """SQLite's message plus what an operator can do about it."""
    text = str(exc)
    if (
        path is not None
        and read_only_fs(path.parent)
        and ("readonly" in text or "read-only" in text)
    ):
        return f"{text}: the filesystem holding {path.parent} is mounted read-only"
    if "readonly" in text or "read-only" in text:
        return (
            f"{text}: the database is read-only for this user; run rotator as the user that "
            "owns it (e.g. `sudo -u rotator rotator ...`) or fix the file's permissions"
        )
    if "unable to open" in text:
        return f"{text}: check that the file and its directory exist and this user may read them"
    if "locked" in text or "busy" in text:
        return f"{text}: another process holds the database; try again"
    if "malformed" in text or "not a database" in text:
        return f"{text}: the file is damaged or not a rotator database; restore it from a backup"
    return text
