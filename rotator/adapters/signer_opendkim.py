"""Signer output for OpenDKIM: KeyTable + SigningTable, each rewritten atomically
(temp file + fsync + rename), then a configurable reload command.

KeyTable line:      <key_id>  <domain>:<selector>:<private key path>
SigningTable line:  <pattern> <key_id>   (use "SigningTable refile:<path>" in opendkim.conf,
                    and "MultipleSignatures yes" so a customer's mail gets both its own and
                    the ESP's feedback-loop signature)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..domain.errors import SignerError
from ..ports import SigningEntry

HEADER = "# Written by rotator. Do not edit: it is rewritten on every key activation.\n"


def render_key_table(entries: Sequence[SigningEntry]) -> str:
    # An ESP key signs for many customers: one KeyTable line, many SigningTable lines.
    keys = {e.key_id: f"{e.key_id} {e.domain}:{e.selector}:{e.key_path}\n" for e in entries}
    return HEADER + "".join(keys.values())


def render_signing_table(entries: Sequence[SigningEntry]) -> str:
    lines = [f"{e.signing_pattern} {e.key_id}\n" for e in entries]
    return HEADER + "".join(lines)


def atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class OpenDkimSigner:
    def __init__(
        self,
        key_table: Path,
        signing_table: Path,
        reload: Sequence[str] = (),
        timeout: float = 30.0,
    ) -> None:
        self.key_table = Path(key_table)
        self.signing_table = Path(signing_table)
        self.reload = list(reload)
        self.timeout = timeout

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        lock = self.key_table.parent / ".rotator-signer.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def apply(self, entries: Sequence[SigningEntry]) -> None:
        ordered = sorted(entries, key=lambda e: (e.domain, e.selector))
        try:
            self.key_table.parent.mkdir(parents=True, exist_ok=True)
            self.signing_table.parent.mkdir(parents=True, exist_ok=True)
            # KeyTable first: a SigningTable must never name a key the KeyTable lacks.
            atomic_write(self.key_table, render_key_table(ordered))
            atomic_write(self.signing_table, render_signing_table(ordered))
        except OSError as exc:
            raise SignerError(f"cannot write signer tables: {exc}") from exc
        if not self.reload:
            return
        try:
            proc = subprocess.run(
                self.reload, capture_output=True, text=True, timeout=self.timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SignerError(f"reload command {self.reload[0]!r} failed: {exc}") from exc
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
            raise SignerError(
                f"reload command {' '.join(self.reload)!r} exited {proc.returncode}: {tail[0]}"
            )
