"""The key files a signer target still holds after their keys left its tables. A signer
reloads asynchronously (OpenDKIM per milter connection, rspamd's old workers finish their
tasks): until the target has reloaded, passed its probe and its grace has run, a worker on
the old configuration may still open such a file, and a missing one means a tempfail
(OpenDKIM) or mail sent unsigned (rspamd). The list lives on disk beside the signer lock,
so a restart still wipes what an earlier process left held."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from ...domain.errors import SignerError

# name -> when it may be wiped (Unix time); None until the target reloaded and was probed
Held = dict[str, float | None]


class Departed:
    def __init__(self, path: Path, grace: float, now: Callable[[], float]) -> None:
        self.path = path
        self.grace = grace
        self.now = now

    def read(self) -> Held:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(n): (float(t) if isinstance(t, int | float) else None) for n, t in data.items()}

    def _write(self, held: Held) -> None:
        if not held:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()  # an error here is one a write would raise too
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(tmp, "w") as fh:
                json.dump(held, fh, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            raise SignerError(f"cannot record the held key files in {self.path}: {exc}") from None

    def add(self, names: Iterable[str], listed: Iterable[str] = ()) -> None:
        """`names` left the tables just written (a file already held keeps its time);
        `listed` are back in them, no longer held."""
        held = self.read()
        for name in names:
            held.setdefault(name, None)
        for name in listed:
            held.pop(name, None)
        self._write(held)

    def only(self, names: Iterable[str]) -> None:
        """A complete write held exactly `names`: the others are listed again or gone."""
        held = self.read()
        self._write({n: held.get(n) for n in names})

    def settle(self) -> None:
        """The target reloaded and passed its probe: the grace of what waited starts."""
        held = self.read()
        if any(t is None for t in held.values()):
            at = self.now() + self.grace
            self._write({n: at if t is None else t for n, t in held.items()})

    def due(self) -> list[str]:
        now = self.now()
        return sorted(n for n, t in self.read().items() if t is not None and t <= now)

    def drop(self, names: Iterable[str]) -> None:
        held = self.read()
        for name in names:
            held.pop(name, None)
        self._write(held)
