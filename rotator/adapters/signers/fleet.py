"""Every signer target at once: written, reloaded and probed concurrently (they are other
processes, often other hosts), under one lock shared by the daemon and operator commands,
each with its own outcome: one target failing never hides how the others did."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ...domain.errors import ExternalError
from ...ports import SigningEntry, TargetResult
from .target import SignerTarget


class SignerFleet:
    def __init__(self, targets: Sequence[SignerTarget], lock_path: Path) -> None:
        self.targets = list(targets)
        self.lock_path = lock_path

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def apply(
        self, entries: Sequence[SigningEntry], check: Sequence[SigningEntry] = ()
    ) -> list[TargetResult]:
        try:
            if len(self.targets) == 1:
                return [self._one(self.targets[0], entries, check)]
            with ThreadPoolExecutor(max_workers=len(self.targets)) as pool:
                return list(pool.map(lambda t: self._one(t, entries, check), self.targets))
        finally:
            for target in self.targets:  # key bytes read for this rewrite do not linger
                target.read_key.clear()

    @staticmethod
    def _one(
        target: SignerTarget, entries: Sequence[SigningEntry], check: Sequence[SigningEntry]
    ) -> TargetResult:
        try:
            target.write(entries)
        except ExternalError as exc:
            return TargetResult(target.name, False, exc.reason)
        mine = target.select(check)
        if not mine:
            return TargetResult(target.name, True, "written and reloaded")
        if not target.prober.enabled:
            return TargetResult(target.name, True, "written and reloaded; probe off: not proven")
        try:
            detail = target.prober.check(mine)
        except ExternalError as exc:
            return TargetResult(target.name, False, exc.reason)
        return TargetResult(target.name, True, detail, proven=True)
