"""What the backends that build files share (tinydns, zone files): rotator's records kept
in a file of its own, one line per owner name, read and rewritten once per batch under a
lock that serializes batches (threads and processes alike); files replaced atomically; the
commands that build, check, deliver and reload run with a timeout, a failure one line."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

from ...domain.errors import ExternalError, PublishError
from ...domain.reasons import Reason
from ...ports import RecordChange, ZoneChanges

LOCK_WAIT = 120.0  # seconds a batch waits for another one (a rebuild and its deliveries)
# What a command says when its user or key is refused: ssh's and the kernel's "Permission
# denied", nsd-control's TLS failures (a wrong control key or certificate).
_REFUSED = re.compile(r"permission denied|\bssl\b|ssl_|certificate|authenticat", re.IGNORECASE)
_NAME = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$")


def record_name(name: str) -> str:
    """An owner name as the files hold it: lower case, no final dot, nothing to escape."""
    out = name.rstrip(".").lower()
    if not _NAME.match(out) or len(out) > 253:
        raise PublishError(f"record name {name!r} is not a host name of a-z, 0-9, '-' and '_'")
    return out


def in_zone(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)


class FileBackend:
    """publish() for a backend that rebuilds files: each zone's changes checked, then one
    rebuild of everything under the lock. rebuild() gets every zone with changes and
    answers each (what accepted them, or PublishError); a PublishError it raises fails them
    all."""

    def __init__(self, lock: Path) -> None:
        self.lock = BatchLock(lock)

    def serves(self, zone: str) -> bool:
        return True  # whatever it was given: a router picked this backend for the zone

    def in_rounds(self, zone: str) -> bool:
        return False  # a batch is one rebuild of the whole file

    def zone_problem(self, zone: str) -> str | None:
        raise NotImplementedError

    def rebuild(self, zones: dict[str, list[RecordChange]]) -> dict[str, str | PublishError]:
        raise NotImplementedError

    def publish(self, batch: Sequence[ZoneChanges]) -> list[str | PublishError]:
        zones: dict[str, list[RecordChange]] = {}
        early: dict[str, PublishError] = {}
        for zone, changes in batch:
            key = zone.rstrip(".").lower()
            try:
                for change in changes:
                    if not in_zone(record_name(change.name), key):
                        raise PublishError(f"record {change.name} is outside zone {key}")
            except PublishError as exc:
                early[key] = exc
                continue
            zones.setdefault(key, []).extend(changes)
        answers: dict[str, str | PublishError] = {}
        if any(zones.values()):
            try:
                with self.lock.held():
                    answers = self.rebuild({z: c for z, c in zones.items() if c})
            except ExternalError as exc:
                answers = dict.fromkeys(zones, PublishError(exc.reason, exc.code))
            except OSError as exc:  # one the rebuild did not expect: still one line
                answers = dict.fromkeys(zones, PublishError(str(exc)))
        out: list[str | PublishError] = []
        for zone, _ in batch:
            key = zone.rstrip(".").lower()
            if key in early:
                out.append(early[key])
            elif key in answers:
                out.append(answers[key])
            else:  # nothing to change: say whether it could have been
                problem = self.zone_problem(key)
                out.append(PublishError(problem) if problem else "nothing to change")
        return out


class BatchLock:
    """One batch at a time per directory: a thread lock for this process, flock for the
    daemon and an operator's command side by side. Waits LOCK_WAIT at most."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread = threading.Lock()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        deadline = time.monotonic() + LOCK_WAIT
        if not self._thread.acquire(timeout=LOCK_WAIT):
            raise PublishError(f"another batch held {self.path} for {LOCK_WAIT:g}s")
        try:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise PublishError(f"cannot open the lock {self.path}: {exc.strerror}") from None
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise PublishError(
                                f"another process held {self.path} for {LOCK_WAIT:g}s"
                            ) from None
                        time.sleep(0.05)
                yield
            finally:
                os.close(fd)  # releases the flock
        finally:
            self._thread.release()


class OwnedFile:
    """The lines rotator wrote to `path` (below the line `after`, if given), by owner name.
    What the last batch wrote is kept in memory while the file is the one it wrote (same
    inode, size and mtime): a tick among 100,000 records does not read 45 MB again."""

    def __init__(self, path: Path, key: Callable[[str], str], after: str | None = None) -> None:
        self.path, self.key, self.after = path, key, after
        self._kept: tuple[tuple[int, int, int] | None, dict[str, str]] | None = None

    def load(self) -> dict[str, str]:
        """The caller's to change; hand it back with written() once it is on disk."""
        kept, self._kept = self._kept, None  # a batch that fails keeps nothing
        if kept is not None and kept[0] is not None and kept[0] == self._stamp():
            return kept[1]
        try:
            with self.path.open(encoding="ascii") as f:
                if self.after is not None:
                    for line in f:
                        if line.rstrip("\n") == self.after:
                            break
                return {self.key(line): line for line in f if line.strip()}
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise PublishError(f"cannot read rotator's records in {self.path}: {exc}") from None

    def written(self, lines: dict[str, str]) -> None:
        self._kept = (self._stamp(), lines)

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns


def write_atomic(
    path: Path,
    parts: Iterable[str],
    mode: int = 0o644,
    check: Callable[[Path], None] | None = None,
) -> None:
    """`parts` into a new file beside `path`, fsynced, `check`ed (PublishError), then renamed
    over it: a reader sees the old file or the new one, whole."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        why = f"cannot write in {path.parent}: {exc.strerror}"
        raise PublishError(why, os_reason(exc)) from None
    try:
        # latin-1: the bytes of an operator's file (read as latin-1) go out as they came
        with os.fdopen(fd, "w", encoding="latin-1", buffering=1 << 20) as f:
            f.writelines(parts)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        if check is not None:
            check(Path(tmp))
        os.replace(tmp, path)
        sync_dir(path.parent)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise PublishError(f"cannot write {path}: {exc.strerror}", os_reason(exc)) from None
        raise


def sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def os_reason(exc: OSError) -> Reason | None:
    return Reason.DNS_CREDENTIAL if isinstance(exc, PermissionError) else None


def run(
    command: Sequence[str],
    what: str,
    timeout: float,
    stdin: Path | None = None,
    cwd: Path | None = None,
) -> None:
    """Run `command` (its own process group, killed whole on timeout), or PublishError:
    `what` and the command's own last words, one line."""
    shown = " ".join(command)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    try:
        with contextlib.ExitStack() as stack:
            source: IO[bytes] | int = (
                stack.enter_context(stdin.open("rb")) if stdin else subprocess.DEVNULL
            )
            proc = subprocess.Popen(
                list(command),
                stdin=source,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                start_new_session=True,  # a pipeline or ssh's children go with it
            )
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.communicate(timeout=5)
                raise PublishError(
                    f"{what}: {shown!r} took over {timeout:g}s (raise the backend's timeout)",
                    Reason.DNS_TIMEOUT,
                ) from None
    except FileNotFoundError as exc:
        missing = exc.filename if exc.filename else command[0]
        raise PublishError(f"{what}: {missing} not found (is it installed?)") from None
    except OSError as exc:
        raise PublishError(f"{what}: {shown!r}: {exc.strerror}", os_reason(exc)) from None
    if proc.returncode != 0:
        said = last_words(err or out)
        code = Reason.DNS_CREDENTIAL if _REFUSED.search(said) else None
        status = f"exited {proc.returncode}" if proc.returncode > 0 else "was killed"
        raise PublishError(f"{what}: {shown!r} {status}: {said or 'no message'}", code)


def last_words(output: bytes, limit: int = 300) -> str:
    lines = [ln.strip() for ln in output.decode("utf-8", "replace").splitlines() if ln.strip()]
    text = " | ".join(lines[-3:])
    return text if len(text) <= limit else "..." + text[-limit:]
