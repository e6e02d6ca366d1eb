"""Where the event store lives: an SQLite file (a path, relative to the config's directory),
or a PostgreSQL database (a `postgresql://` URL in libpq's form, e.g.
`postgresql:///rotator?host=/run/postgresql` over a unix socket, or with a user, host and
port); and where the files that go with it are kept (the state directory): by default
beside an SQLite file and named after it (`rotator.db.signer-lock`), in the config's
directory for a database that is not a file (`rotator.signer-lock`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..domain.declared import refuse
from .values import resolve

SCHEMES = ("postgresql://", "postgres://")
# what the files beside a database that is not a file are named after
STATE_NAME = "rotator"


def is_url(text: str) -> bool:
    return text.startswith(SCHEMES)


def check_database(raw: Any) -> str:
    """A path, or a PostgreSQL URL (libpq checks the rest when it connects)."""
    if not isinstance(raw, str) or not raw:
        raise refuse('missing or not a string; a path, or a URL such as "postgresql:///rotator"')
    if "\0" in raw:
        raise refuse(f"{redact(raw)!r} holds a NUL character")
    if "://" in raw.split("?", 1)[0] and not is_url(raw):
        raise refuse(
            f"{redact(raw)!r}: not a database rotator knows; give a file path (SQLite) or a "
            '"postgresql://" URL'
        )
    if is_url(raw) and any(c.isspace() for c in raw):
        raise refuse(f"{redact(raw)!r}: a URL holds no spaces (write them as %20)")
    return raw


_USERINFO = re.compile(r"^([a-z][a-z0-9+.-]*://[^/@:?]*):[^/@?]*@")
_PARAM = re.compile(r"([?&]password=)[^&]*")


def redact(url: str) -> str:
    """The URL without its password, to be shown and logged."""
    return _PARAM.sub(r"\1***", _USERINFO.sub(r"\1:***@", url))


@dataclass(frozen=True)
class Database:
    path: Path | None  # the SQLite file
    url: str | None  # the PostgreSQL URL
    state_dir: Path  # where the files that go with the database are kept by default

    @property
    def files(self) -> Path:
        """What the files that go with the database are named after, in the state
        directory (`<files>.signer-lock`): the SQLite file's name, or STATE_NAME."""
        return self.state_dir / (self.path.name if self.path is not None else STATE_NAME)

    def side(self, suffix: str) -> Path:
        return self.files.with_name(self.files.name + suffix)

    def __str__(self) -> str:
        return str(self.path) if self.path is not None else redact(str(self.url))


def database(raw: str, state_dir: str | None, base: Path) -> Database:
    """The database setting resolved against the config's directory `base`."""
    state = None if state_dir is None else resolve(state_dir, base)
    if is_url(raw):
        return Database(None, raw, state or base)
    path = resolve(raw, base)
    return Database(path, None, state or path.parent)
