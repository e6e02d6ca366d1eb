"""[keys]: where private keys are kept. By default the key directory is the store; with
store = "database" each key is sealed (AES-256-GCM under a key of its own, wrapped by the
key-encryption key) in a database every node reaches, and key_dir becomes the local copy
the signers read. The database is a setting of its own: it may name the same PostgreSQL
database as the event store, or another."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import PlainValidator, model_validator

from ..domain.declared import Settings, refuse, setting
from ..domain.errors import ConfigError
from .values import PATH, resolve

STORES = ("files", "database")
URLS = ("postgresql://", "postgres://")
CREDENTIAL = "keys.kek"  # the systemd credential the KEK is found as by default

_URL_PASSWORD = re.compile(r"^(postgres(?:ql)?://[^/@:?]*):[^/@?]*@")
_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s]*)")


def redact(conninfo: str) -> str:
    """A connection string without its password, to be shown and logged."""
    return _PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1:***@", conninfo))


@dataclass(frozen=True)
class KeysConfig:
    store: str = "files"
    database: str | Path = ""  # a PostgreSQL URL, or an SQLite file
    kek_file: Path | None = None
    previous_kek_file: Path | None = None
    credentials: str | None = None  # $CREDENTIALS_DIRECTORY when the config was loaded

    @property
    def sealed(self) -> bool:
        return self.store == "database"

    @property
    def shown(self) -> str:
        """The key database as it may be shown (a URL without its password)."""
        return redact(self.database) if isinstance(self.database, str) else str(self.database)


def _store(value: Any) -> str:
    if value not in STORES:
        raise refuse(f'{value!r}: use "files" (key_dir) or "database" (sealed in keys.database)')
    return str(value)


def _database(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise refuse('give a "postgresql://" URL, or the path of an SQLite file')
    if "://" in value.split("?", 1)[0] and not value.startswith(URLS):
        raise refuse('not a database rotator knows: give a "postgresql://" URL or a file path')
    if "\0" in value or (value.startswith(URLS) and any(c.isspace() for c in value)):
        raise refuse("a URL holds no spaces or NUL characters (write a space as %20)")
    return value


class KeysSettings(Settings):
    UNKNOWN: ClassVar[str] = "unknown key"

    store: Annotated[str, PlainValidator(_store)] = setting(
        "files",
        '`"files"`: key_dir is the store; `"database"`: each key is sealed in `database` '
        "under the KEK, key_dir is the local copy the signers read (see Security)",
    )
    database: Annotated[str, PlainValidator(_database)] = setting(
        "",
        'with store = "database": a `postgresql://` URL every node reaches (psycopg), or an '
        "SQLite file (one node)",
        "required with store = database",
    )
    kek_file: Annotated[str, PATH] = setting(
        "",
        "the key-encryption key: 32 random octets in base64, owned by rotator's user, 0400 "
        "(`rotator keys kek-create FILE`); the same on every node",
        "the systemd credential `keys.kek`",
    )
    previous_kek_file: Annotated[str, PATH] = setting(
        "",
        "the KEK before `kek_file`, still opening the rows not yet re-wrapped while the KEK "
        "changes (`rotator keys rewrap`)",
        "none",
    )

    @model_validator(mode="after")
    def _needs_database(self) -> KeysSettings:
        if self.store == "files":
            given = [k for k in ("database", "kek_file", "previous_kek_file") if getattr(self, k)]
            if given:
                raise refuse(
                    f'is "files": {given[0]} would go unused; set store = "database" to seal '
                    "keys there, or remove it",
                    key="keys.store",
                )
        if self.store == "database" and not self.database:
            raise refuse(
                'store = "database" needs the database the keys are sealed in: a '
                '"postgresql://" URL, or an SQLite file',
                key="keys.database",
            )
        return self

    def config(self, base: Path, source: Path) -> KeysConfig:
        if self.store == "files":
            return KeysConfig()
        credentials = os.environ.get("CREDENTIALS_DIRECTORY")
        if self.kek_file:
            kek = resolve(self.kek_file, base)
        elif credentials and (Path(credentials) / CREDENTIAL).exists():
            kek = Path(credentials) / CREDENTIAL
        else:
            raise ConfigError(
                f'{source}: keys.kek_file: store = "database" needs the key-encryption key: '
                f"set kek_file, or pass the systemd credential {CREDENTIAL} (LoadCredential="
                f"{CREDENTIAL}:/etc/rotator/keys.kek); `rotator keys kek-create FILE` makes one"
            )
        db = self.database
        return KeysConfig(
            store=self.store,
            database=db if db.startswith(URLS) else resolve(db, base),
            kek_file=kek,
            previous_kek_file=resolve(self.previous_kek_file, base)
            if self.previous_kek_file
            else None,
            credentials=credentials,
        )
