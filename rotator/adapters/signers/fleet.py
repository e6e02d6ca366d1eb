"""Every signer target at once: written, reloaded and probed concurrently (they are other
processes, often other hosts), under one lock shared by the daemon and operator commands
(and, on a database several nodes share, by every node), each with its own outcome: one
target failing never hides how the others did."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import structlog

from ...domain.errors import ExternalError
from ...ports import SignerChange, SigningEntry, TargetResult
from .base import Limits
from .departed import Departed
from .signer_lock import LOCK_WAIT, SignerLock
from .target import SignerTarget, TableSource, left_out_text

log = structlog.get_logger("rotator")


class SharedLock(Protocol):
    """The signer lock across the nodes that share a database (taken after the host's)."""

    def hold(self, wait: float) -> contextlib.AbstractContextManager[None]: ...


class SignerFleet:
    def __init__(
        self,
        targets: Sequence[SignerTarget],
        lock_path: Path,
        now: Callable[[], float] = time.time,
        lock_wait: float | None = None,
        shared: SharedLock | None = None,
    ) -> None:
        self.targets = list(targets)
        self.shared = shared
        self.lock_path = lock_path
        if lock_wait is None:  # outlast what a healthy holder may take: deliver, reload, probe
            holds = (2 * t.config.timeout + t.config.probe.timeout for t in targets)
            longest = max(holds, default=0)
            lock_wait = max(LOCK_WAIT, longest + 10)
        self.lock = SignerLock(lock_path, lock_wait)
        # beside the lock: the log position every target was last completely in step with
        self.stamp_path = lock_path.with_name(lock_path.name + ".stamp")
        for t in self.targets:
            if t.config.legacy_tables is None:  # the older layout writes no key files
                held = lock_path.with_name(f"{lock_path.name}.held-{t.name}.json")
                t.departed = Departed(held, t.config.key_grace, now)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """SignerLockBusy naming the holder once the lock stayed taken for the wait: this
        host's, then (several nodes) the one in the database."""
        with self.lock.hold():
            if self.shared is None:
                yield
                return
            with self.shared.hold(self.lock.wait):
                yield

    def apply(
        self,
        entries: Callable[[], Sequence[SigningEntry]],
        check: Sequence[SigningEntry] = (),
        wipe: Callable[[str], bool] = lambda key_id: False,
    ) -> list[TargetResult]:
        source = TableSource(entries)
        return self._each(lambda t: t.write(source, wipe), check)

    def withdraw(
        self,
        removed: Sequence[SigningEntry],
        entries: Callable[[], Sequence[SigningEntry]],
        wipe: bool,
    ) -> list[TargetResult]:
        source = TableSource(entries)
        return self._each(lambda t: t.write_removal(removed, source, wipe), ())

    def problems(
        self, entries: Sequence[SigningEntry], beside: Sequence[SigningEntry] = ()
    ) -> list[str]:
        """Which targets could not sign the senders of `entries` beside `beside` (a few
        senders they sign now), and why: one line each."""
        out = []
        for t in self.targets:
            if isinstance(t.format, Limits):
                refused = t.format.refused(t.select(entries), t.select(beside))
                out += [
                    f"target {t.name} ({t.format.name}) cannot sign {pattern}: {why}"
                    for pattern, why in sorted(refused.items())
                ]
        return out

    def sweep(self) -> int:
        """Wipe the held key files whose grace has run (see Departed), under the lock;
        how many. A target that cannot be reached keeps them for the next sweep."""
        due = [t for t in self.targets if t.departed is not None and t.departed.due()]
        if not due:
            return 0
        wiped = 0
        with self.locked():
            for target in due:
                try:
                    wiped += target.sweep()
                except ExternalError as exc:
                    log.warning("held_keys_not_wiped", target=target.name, error=exc.reason)
        return wiped

    def stamp(self, position: int | None) -> None:
        text = "writing\n" if position is None else f"{position}\n"
        tmp = self.stamp_path.with_name(self.stamp_path.name + ".tmp")
        try:
            with open(tmp, "w") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.stamp_path)
        except OSError:  # no stamp: the next start-up rewrites every target, as without one
            with contextlib.suppress(OSError):
                self.stamp_path.unlink()

    def stamped(self) -> int | None:
        try:
            text = self.stamp_path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def trust(self) -> None:
        for target in self.targets:
            target.synced = True

    def change(
        self, change: SignerChange, check: Sequence[SigningEntry] = ()
    ) -> list[TargetResult]:
        source = TableSource(change.everything)
        return self._each(lambda t: t.write_change(change.added, change.removed, source), check)

    def _each(
        self, write: Callable[[SignerTarget], None], check: Sequence[SigningEntry]
    ) -> list[TargetResult]:
        if not self.targets:
            return []
        try:
            if len(self.targets) == 1:
                return [self._one(self.targets[0], write, check)]
            with ThreadPoolExecutor(max_workers=len(self.targets)) as pool:
                return list(pool.map(lambda t: self._one(t, write, check), self.targets))
        finally:
            for target in self.targets:  # key bytes read for this rewrite do not linger
                target.read_key.clear()

    @staticmethod
    def _one(
        target: SignerTarget,
        write: Callable[[SignerTarget], None],
        check: Sequence[SigningEntry],
    ) -> TargetResult:
        target.left_out = {}
        try:
            write(target)
        except ExternalError as exc:
            return TargetResult(target.name, False, exc.reason + _left_out(target))
        mine = [e for e in target.select(check) if e.signing_pattern not in target.left_out]
        if not mine:
            result = TargetResult(target.name, True, "written and reloaded" + _left_out(target))
        elif not target.prober.enabled:
            detail = "written and reloaded; probe off: not proven" + _left_out(target)
            result = TargetResult(target.name, True, detail)
        else:
            try:
                detail = target.prober.check(mine)
            except ExternalError as exc:
                return TargetResult(target.name, False, exc.reason + _left_out(target))
            result = TargetResult(target.name, True, detail + _left_out(target), proven=True)
        try:
            target.settled()
        except ExternalError as exc:  # the files stay held: the next sweep wipes them
            log.warning("held_keys_not_wiped", target=target.name, error=exc.reason)
        return result


def _left_out(target: SignerTarget) -> str:
    """What a result says of the senders the target's format could not sign."""
    if not target.left_out:
        return ""
    return f"; not signed here: {left_out_text(target.left_out)}"
