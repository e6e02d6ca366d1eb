"""One signer target: its format renders the files, which are delivered (written here, or
piped to an installer that runs as the signer's user, maybe on another host), then the
signer is reloaded and, for the keys being switched to, probed."""

from __future__ import annotations

import dataclasses
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import structlog

from ...config.targets import TargetConfig
from ...domain.errors import SignerError
from ...ports import SigningEntry, SigningStream
from . import bundle
from .base import (
    Format,
    Limits,
    OnceEach,
    Spool,
    StreamedTables,
    TableData,
    TargetFiles,
    render,
)
from .departed import Departed
from .exim import EximFormat
from .installer import InstallError, install
from .jsonfile import JsonFormat
from .kumomta import KumoMtaFormat
from .opendkim import (
    OpenDkimFormat,
    render_signing_table,
    render_tables,
    write_tables,
)
from .probing.prober import Prober
from .rspamd import RspamdFormat

log = structlog.get_logger("rotator")

FORMATS: dict[str, Callable[[], Format]] = {
    "opendkim": OpenDkimFormat,
    "rspamd": RspamdFormat,
    "exim": EximFormat,
    "kumomta": KumoMtaFormat,
    "json": JsonFormat,
}


def _tail(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return (text.strip().splitlines()[-1:] or [""])[0]


class SignerTarget:
    def __init__(self, config: TargetConfig, read_key: KeyCache, prober: Prober) -> None:
        self.config = config
        self.name = config.name
        self.format = FORMATS[config.format]()
        self.read_key = read_key
        self.prober = prober
        # A complete write landed (since this process started): from then on a change
        # may be written alone. Any failure, or another process's write, resets it.
        self.synced = False
        # the key files this target keeps after their keys left (set by the fleet; None:
        # wiped in the write that drops them, as for the older layout's own key copies)
        self.departed: Departed | None = None
        # the senders the last tables left out (pattern -> why): the format cannot sign
        # them exactly, and they must not keep every other sender out with them
        self.left_out: dict[str, str] = {}

    def select(self, entries: Sequence[SigningEntry]) -> list[SigningEntry]:
        """The entries this target signs (an OpenDKIM instance: its one algorithm)."""
        return [e for e in entries if e.algorithm in self.config.algorithms]

    def signable(self, entries: Sequence[SigningEntry]) -> list[SigningEntry]:
        """This target's entries less the senders its format cannot sign (kept in
        left_out): one such sender never makes the target unwritable for the others, an
        emergency's removal included."""
        mine = self.select(entries)
        fmt = self.format
        self.left_out = fmt.refused(mine) if isinstance(fmt, Limits) else {}
        if not self.left_out:
            return mine
        log.warning(
            "signer_senders_left_out",
            target=self.name,
            senders=len(self.left_out),
            first=left_out_text(self.left_out),
        )
        return [e for e in mine if e.signing_pattern not in self.left_out]

    def files(self, entries: Sequence[SigningEntry]) -> TargetFiles:
        if self.config.legacy_tables is not None:
            # the older [signer] table: two files naming rotator's own key copies
            key_table, signing_table = self.config.legacy_tables
            return TargetFiles(
                tables={
                    key_table.name: legacy_key_table(entries).encode(),
                    signing_table.name: render_signing_table(entries).encode(),
                }
            )
        return render(self.format, entries, self.read_key, self.key_dir)

    @property
    def key_dir(self) -> str:
        return str(self.config.directory / "keys")

    def complete(self, source: TableSource) -> TargetFiles:
        """Everything this target holds. The older [signer] table is rendered from the
        signing set's stream (a million identities in bounded memory); the rest from the
        list of entries."""
        if source.stream is None or self.config.legacy_tables is None:
            return self.files(self.signable(source.everything()))
        return self.table_files(source)

    def table_files(self, source: TableSource) -> TargetFiles:
        """This target's tables alone: written a line at a time into spooled temp files
        when the signing set streams and the format can (OpenDKIM in either layout,
        rspamd, json); rendered from the list of entries otherwise."""
        stream, legacy, fmt = source.stream, self.config.legacy_tables, self.format
        if stream is None or (legacy is None and not isinstance(fmt, StreamedTables)):
            return TargetFiles(tables=source.tables(self))
        algorithms = self.config.algorithms
        if legacy is not None:  # rotator's own key copies, under the configured names
            names: tuple[str, ...] = (legacy[0].name, legacy[1].name)

            def write(rows: Iterator[tuple[Any, ...]], out: list[Spool]) -> None:
                write_tables(rows, stream.key_path, out[0].write, out[1].write)

        else:
            assert isinstance(fmt, StreamedTables)
            names, key_dir = fmt.table_names, self.key_dir

            def write(rows: Iterator[tuple[Any, ...]], out: list[Spool]) -> None:
                fmt.write_tables(rows, key_dir, [o.write for o in out])

        def tables(rows: Iterator[tuple[Any, ...]]) -> dict[str, BinaryIO]:
            out = [Spool() for _ in names]
            write((r for r in rows if r[3] in algorithms), out)
            return {name: o.done() for name, o in zip(names, out, strict=True)}

        return TargetFiles(spooled=stream.render(tables))

    def write(
        self, source: TableSource, wipe: Callable[[str], bool] = lambda key_id: False
    ) -> None:
        """Deliver the complete files and reload. The key files of keys that left are
        held (see Departed), except those of the keys `wipe` names (compromised): wiped
        before the reload. SignerError with the reason."""
        self.synced = False
        stream, cfg, hold = source.stream, self.config, self.departed is not None
        if (
            stream is not None
            and cfg.legacy_tables is None
            and isinstance(self.format, StreamedTables)
        ):
            # tables spooled first, then the key files straight from the rows (a batch at a
            # time, locally, or a line at a time to a deliver command), then the tables,
            # then the keys that left are held or wiped
            tables = self.table_files(source).spooled
            specs: dict[str, tuple[TableData, int]] = {
                n: (f, cfg.table_mode) for n, f in tables.items()
            }
            held = stream.render(
                lambda rows: self._put(self._key_files(rows, stream), specs, hold=hold)
            )
        else:
            held = self._deliver(self.complete(source), hold=hold)
        if self.departed is not None:
            urgent = [n for n in held if wipe(PurePosixPath(n).name.partition(".")[0])]
            if urgent:
                self._deliver(TargetFiles(), remove=urgent)
            self.departed.only(sorted(set(held) - set(urgent)))
        self.synced = True
        self._reload()

    def settled(self) -> None:
        """The target reloaded and passed its probe: the grace of the files it holds
        starts, and those whose grace has run are wiped."""
        if self.departed is not None:
            self.departed.settle()
            self.sweep()

    def sweep(self) -> int:
        """Wipe the held key files whose grace has run; how many."""
        departed = self.departed
        due = departed.due() if departed is not None else []
        if departed is None or not due:
            return 0
        self._deliver(TargetFiles(), remove=due)  # no table names them: no reload
        departed.drop(due)
        return len(due)

    def _key_files(
        self, rows: Iterator[tuple[Any, ...]], stream: SigningStream
    ) -> Iterator[tuple[str, tuple[bytes, int]]]:
        """Each key file of these rows once, read from rotator's copy as it is needed."""
        fmt, mode, algorithms = self.format, self.config.key_mode, self.config.algorithms
        once = OnceEach(fmt.name)
        for r in rows:
            if r[3] not in algorithms or not once.first_key(r):
                continue
            e = SigningEntry(r[0], r[1], r[2], stream.key_path(r[0]), r[6], r[3], bool(r[7]))
            for name, data in fmt.key_files([e], self.read_key.uncached).items():
                yield name, (data, mode)

    def _install(
        self,
        keys: Mapping[str, tuple[bytes, int]] | Iterator[tuple[str, tuple[bytes, int]]],
        tables: Mapping[str, tuple[TableData, int]],
        remove: list[str] | None = None,
        hold: bool = False,
    ) -> list[str]:
        """Install locally; the key files held (with `hold`, see install())."""
        cfg = self.config
        directory = cfg.directory if cfg.legacy_tables is None else cfg.legacy_tables[0].parent
        manage = cfg.legacy_tables is None  # the older layout names rotator's own key files
        held: list[str] | None = [] if hold else None
        try:
            install(
                directory,
                keys,
                tables,
                group=cfg.key_group,
                manage_keys=manage,
                remove=remove,
                held=held,
            )
        except (InstallError, OSError, KeyError) as exc:
            raise SignerError(f"cannot write signer tables in {directory}: {exc}") from None
        return held or []

    def write_change(
        self, added: Sequence[SigningEntry], removed: Sequence[SigningEntry], tables: TableSource
    ) -> None:
        """Deliver the key files `added` brings, the tables (from everything that signs)
        and wipe the key files of `removed`; then reload. Only once a complete write has
        landed: the first write of a process, or the one after a failure, is complete."""
        if not self.synced or self.config.legacy_tables is not None:
            self.write(tables)
            return
        self.synced = False
        table_files = self.table_files(tables)  # first: it says which senders are left out
        mine = [e for e in self.select(added) if e.signing_pattern not in self.left_out]
        keep = {self.format.key_name(e) for e in mine}
        gone = sorted({self.format.key_name(e) for e in self.select(removed)} - keep)
        files = dataclasses.replace(table_files, keys=self.format.key_files(mine, self.read_key))
        if self.departed is not None:
            # held before the write: a crash after it must not leave them unknown
            self.departed.add(gone, listed=keep)
            gone = []
        self._deliver(files, remove=gone)
        self.synced = True
        self._reload()

    def write_removal(
        self, removed: Sequence[SigningEntry], source: TableSource, wipe: bool
    ) -> None:
        """Take the keys of `removed` out: the tables (from everything that still signs)
        and nothing else, no key file sent, so that an emergency over a million keys costs
        a table write, not a complete one. Their key files are wiped at once with `wipe`
        (compromised), else held for the grace. Then reload."""
        if self.config.legacy_tables is not None:  # tables only: they are the whole write
            self.write(source)
            return
        gone = sorted({self.format.key_name(e) for e in self.select(removed)})
        if self.departed is not None and not wipe:
            self.departed.add(gone)  # before the write: a crash after it still wipes them
            gone = []
        self._deliver(self.table_files(source), remove=gone)
        if self.departed is not None and gone:
            self.departed.drop(gone)  # held by an earlier write, wiped now
        self._reload()

    def _deliver(
        self, files: TargetFiles, remove: list[str] | None = None, hold: bool = False
    ) -> list[str]:
        """Install the files (see install()); the key files held, with `hold`."""
        cfg = self.config
        keys = {n: (d, cfg.key_mode) for n, d in files.keys.items()}
        tables: dict[str, tuple[TableData, int]] = {
            n: (d, cfg.table_mode) for n, d in files.tables.items()
        }
        tables.update((n, (f, cfg.table_mode)) for n, f in files.spooled.items())
        return self._put(sorted(keys.items()), tables, remove, hold)

    def _put(
        self,
        keys: Iterable[tuple[str, tuple[bytes, int]]],
        tables: Mapping[str, tuple[TableData, int]],
        remove: list[str] | None = None,
        hold: bool = False,
    ) -> list[str]:
        """Install here, or stream to the deliver command; the key files held."""
        cfg = self.config
        if cfg.local:
            return self._install(iter(keys), tables, remove, hold)
        manage = cfg.legacy_tables is None  # the older layout names rotator's own key files
        lines = bundle.frames(tables, keys, remove, hold, manage)
        reply = bundle.send(cfg.deliver, cfg.timeout, lines)
        held = reply.get("held", []) if hold else []
        if not isinstance(held, list) or not all(isinstance(n, str) for n in held):
            raise SignerError("the installer's reply names no held key files")
        return held

    def _reload(self) -> None:
        if not self.config.reload:
            return
        command = list(self.config.reload)
        try:
            proc = subprocess.run(
                command, capture_output=True, text=True, timeout=self.config.timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SignerError(f"reload command {command[0]!r} failed: {exc}") from None
        if proc.returncode != 0:
            raise SignerError(
                f"reload command {' '.join(command)!r} exited {proc.returncode}: "
                f"{_tail(proc.stderr or proc.stdout)}"
            )


class TableSource:
    """Everything that signs, read once per fleet write however many targets need it, and
    each target's tables rendered from it (targets of one format and directory share)."""

    def __init__(self, everything: Callable[[], Sequence[SigningEntry]]) -> None:
        self._read = everything
        # the store's stream, where the caller has one (tables of a million lines)
        self.stream = everything if isinstance(everything, SigningStream) else None
        self._all: Sequence[SigningEntry] | None = None
        self.lock = threading.Lock()

    def everything(self) -> Sequence[SigningEntry]:
        with self.lock:
            if self._all is None:
                self._all = self._read()
            return self._all

    def tables(self, target: SignerTarget) -> dict[str, bytes]:
        return target.format.tables(target.signable(self.everything()), target.key_dir)


def left_out_text(left_out: Mapping[str, str], most: int = 3) -> str:
    """The senders a target left out, the first few by name: "*@a.org (why); ..."."""
    names = sorted(left_out)
    text = "; ".join(f"{p} ({left_out[p]})" for p in names[:most])
    return text + (f"; and {len(names) - most} more" if len(names) > most else "")


def legacy_key_table(entries: Sequence[SigningEntry]) -> str:
    # rotator's own key copies, as the KeyTable of older configs named them
    paths = {e.key_id: e.key_path for e in entries}
    return render_tables(entries, paths.__getitem__)[0]


class KeyCache:
    """Reads rotator's copy of a key once per fleet apply, whatever the number of targets
    (clear() between applies: nothing lingers in memory longer than a rewrite)."""

    def __init__(self, path_of: Callable[[str], Path]) -> None:
        self.path_of = path_of
        self.cache: dict[str, bytes] = {}
        self.lock = threading.Lock()

    def __call__(self, entry: SigningEntry) -> bytes:
        with self.lock:
            data = self.cache.get(entry.key_id)
        if data is None:
            data = self.uncached(entry)
            with self.lock:
                self.cache[entry.key_id] = data
        return data

    def uncached(self, entry: SigningEntry) -> bytes:
        """Read without keeping: a complete write streams a million keys' files."""
        try:
            return self.path_of(entry.key_id).read_bytes()
        except OSError as exc:
            raise SignerError(f"cannot read key {entry.key_id}: {exc.strerror}") from None

    def clear(self) -> None:
        with self.lock:
            self.cache.clear()


def key_reader(path_of: Callable[[str], Path]) -> KeyCache:
    return KeyCache(path_of)
