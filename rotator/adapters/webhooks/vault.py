"""Each webhook subscription's secret and delivery cursor, in files beside the database
(`<database>.webhooks/`, 0700): `<id>.secret` (0600, written once) and `<id>.cursor`
(the position of the last acknowledged delivery, replaced atomically)."""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import secrets
from pathlib import Path

from ...domain.errors import ExternalError, InputError
from ...ports import SecretUnreadable

SECRET_BYTES = 32
_ID = re.compile(r"whk_[0-9a-f]{16}")


class FileVault:
    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + ".webhooks")

    def _file(self, subscription: str, suffix: str) -> Path:
        if not _ID.fullmatch(subscription):  # the id names a file: nothing else may
            raise InputError(f"{subscription!r} is not a webhook id (whk_ and 16 hex digits)")
        return self.path / f"{subscription}{suffix}"

    def new_secret(self, subscription: str) -> str:
        self.path.mkdir(mode=0o700, exist_ok=True)
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        fd = os.open(self._file(subscription, ".secret"), flags, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret + "\n")
            f.flush()
            os.fsync(f.fileno())
        return secret

    def secret(self, subscription: str) -> str:
        path = self._file(subscription, ".secret")
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise SecretUnreadable(f"webhook secret {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            text = ""
        if not _is_secret(text):  # signing with it would fail, or sign with an empty key
            raise SecretUnreadable(f"webhook secret {path}: holds no whsec_ secret")
        return text

    def cursor(self, subscription: str) -> int | None:
        path = self._file(subscription, ".cursor")
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ExternalError(f"webhook cursor {path}: {exc.strerror}") from None
        if not text.isdigit():
            raise ExternalError(f"webhook cursor {path}: not a log position: {text[:40]!r}")
        return int(text)

    def save_cursor(self, subscription: str, position: int) -> None:
        path = self._file(subscription, ".cursor")
        tmp = path.with_name(path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f"{position}\n")
                f.flush()
                # the rename makes it atomic; the fsync keeps a power loss from leaving
                # an empty cursor (a stale one only means redeliveries, which are allowed)
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            raise ExternalError(f"webhook cursor {path}: {exc.strerror}") from None

    def forget(self, subscription: str) -> None:
        for suffix in (".secret", ".cursor"):
            with contextlib.suppress(FileNotFoundError):
                self._file(subscription, suffix).unlink()


def _is_secret(text: str) -> bool:
    if not text.startswith("whsec_"):
        return False
    try:
        return bool(base64.b64decode(text.removeprefix("whsec_"), validate=True))
    except (binascii.Error, ValueError):
        return False
