"""The sending end of a deliver command: a version 4 bundle (see installer/) written to the
command's stdin a line at a time as the key files and table chunks come, so that a complete
write of a million keys to a remote target holds one key file and one chunk in memory,
never the whole bundle."""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import IO, Any

from ...domain.errors import SignerError
from .base import TableData
from .installer import STREAM_VERSION

CHUNK = 1 << 20  # bytes of a table per line (1.4 MB of base64, under the installer's 4 MiB)
NAMES = 10_000  # key file names per remove line
REPLY_CAP = 1 << 16  # what is kept of the command's stdout and stderr

Files = Iterable[tuple[str, tuple[TableData, int]]]


def frames(
    tables: Mapping[str, tuple[TableData, int]],
    keys: Iterable[tuple[str, tuple[bytes, int]]],
    remove: Sequence[str] | None,
    hold: bool,
    manage_keys: bool,
) -> Iterator[bytes]:
    """The bundle's lines: header, names to remove, table chunks, key files, end."""
    yield _json({"version": STREAM_VERSION, "manage_keys": manage_keys, "hold": hold})
    names = list(remove) if remove is not None else None
    for i in range(0, len(names or ()), NAMES):
        yield _json({"remove": names[i : i + NAMES] if names else []})
    if names == []:
        yield _json({"remove": []})  # a partial bundle that wipes nothing
    for name, (data, mode) in sorted(tables.items()):
        for chunk in _chunks(data):
            yield _json({"table": name, "mode": f"{mode:04o}", "data": _b64(chunk)})
    count = 0
    for name, (key, mode) in keys:
        yield _json({"key": name, "mode": f"{mode:04o}", "data": _b64(key)})
        count += 1
    yield _json({"end": {"tables": len(tables), "keys": count}})


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _chunks(data: TableData) -> Iterator[bytes]:
    if isinstance(data, bytes):
        for i in range(0, max(len(data), 1), CHUNK):
            yield data[i : i + CHUNK]
        return
    data.seek(0)
    first = True
    while (chunk := data.read(CHUNK)) or first:
        yield chunk
        first = False
    data.seek(0)


def send(command: Sequence[str], timeout: float, lines: Iterable[bytes]) -> dict[str, Any]:
    """Run the deliver command with `lines` on its stdin; the installer's reply (its last
    stdout line, a JSON object with "written"). SignerError with the reason otherwise. The
    whole exchange is bounded by `timeout`; a failure while the lines are made leaves the
    installer a stream without its end, which it refuses."""
    try:
        proc = subprocess.Popen(
            list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except OSError as exc:
        raise SignerError(f"deliver command {command[0]!r} failed: {exc}") from None
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    out, err = _Tail(proc.stdout), _Tail(proc.stderr)
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        proc.kill()

    timer = threading.Timer(timeout, expire)
    timer.start()
    try:
        try:
            for line in lines:
                proc.stdin.write(line)
        except BrokenPipeError:
            pass  # it stopped reading: its stderr says why
        except BaseException:
            proc.kill()  # cut short: no end line, so the installer changes nothing
            raise
        finally:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
        code = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.join()
        err.join()
    if expired.is_set():
        raise SignerError(f"deliver command {command[0]!r} timed out after {timeout:g}s")
    if code != 0:
        raise SignerError(f"deliver command exited {code}: {_last(err.text or out.text)}")
    # a pipe (socat, ssh) may exit 0 whatever the installer did: only its own last line
    # says the files are in place
    try:
        reply = json.loads(_last(out.text))
    except (ValueError, TypeError):
        reply = None
    if not isinstance(reply, dict) or "written" not in reply:
        raise SignerError(
            'the installer did not confirm the files (no {"written": ...} line on '
            f"stdout): {_last(err.text or out.text) or 'no output'}"
        )
    return reply


def _last(text: str) -> str:
    return (text.strip().splitlines()[-1:] or [""])[0]


class _Tail:
    """Reads a pipe to its end in a thread (a command that writes while it reads never
    blocks on us), keeping the last REPLY_CAP bytes."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self.pipe = pipe
        self.data = b""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with self.pipe:
            while chunk := self.pipe.read(8192):
                self.data = (self.data + chunk)[-REPLY_CAP:]

    def join(self) -> None:
        self.thread.join(timeout=5)

    @property
    def text(self) -> str:
        return self.data.decode(errors="replace")
