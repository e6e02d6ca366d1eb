"""kind = "tinydns": rotator's records are generic `:name:16:rdata:ttl` lines in
`<directory>/rotator.data`, each TXT in 255-octet character-strings (as every other backend
serves it; tinydns-data's own `'` lines would cut it in 127s). Once per batch: the operator's
base_data and those lines become `data`, tinydns-data builds data.cdb (it writes data.tmp and
renames it), and data.cdb is installed on every server. A name rotator publishes or owns that
base_data holds too (tinydns would serve both) is refused before anything is built."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ...config.backends import BackendConfig
from ...config.backends.tinydns import TinydnsConfig
from ...domain.errors import PublishError
from ...domain.record import split_strings
from ...ports import Publisher, RecordChange
from .owned import (
    FileBackend,
    OwnedFile,
    os_reason,
    record_name,
    run,
    sync_dir,
    write_atomic,
)

FRAGMENT = "rotator.data"
UDP_LIMIT = 512  # tinydns answers over UDP only, and never with EDNS0
# tinydns-data's escapes: ':' separates fields, '\' starts an octal escape
_ESCAPE = {ord(":"): "\\072", ord("\\"): "\\134"} | {
    c: f"\\{c:03o}" for c in (*range(32), *range(127, 256))
}
# The lines that give their first field records (Debian's tinydns-data adds S, for SRV);
# %, # and - lines give none.
NAMED = frozenset("'+=.&@^:CSZ")
_OCTAL = re.compile(r"[0-7]{1,3}")
_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_IN_LABEL = {ord("."): "\\056", ord("\\"): "\\134"}


def data_line(change: RecordChange, tcp: bool) -> str:
    """The generic line tinydns-data turns into exactly this TXT record."""
    name = record_name(change.name)
    assert change.text is not None
    try:
        strings = split_strings(change.text)
    except UnicodeEncodeError:
        raise PublishError(f"record {change.name}: the text is not ASCII") from None
    size = 12 + (len(name) + 2 + 4) + (2 + 10) + sum(1 + len(s) for s in strings)
    if size > UDP_LIMIT and not tcp:
        raise PublishError(
            f"record {name}: the answer would be {size} octets, over the {UDP_LIMIT} tinydns "
            "sends over UDP: serve TCP with axfrdns and set tcp = true, or use a shorter name"
        )
    rdata = "".join(f"\\{len(s):03o}" + s.decode("ascii").translate(_ESCAPE) for s in strings)
    return f":{name}:16:{rdata}:{change.ttl}\n"


def line_name(line: str) -> str:
    return line[1 : line.index(":", 1)]


def data_name(field: str) -> str:
    """A name field as tinydns-data reads it: `\\NNN` (1 to 3 octal digits) and `\\c` escapes,
    empty labels dropped (no final dot), A-Z lowered. A dot inside a label stays escaped
    (`\\056`): that name is no host name rotator could publish."""
    if "\\" not in field:
        name = field.translate(_LOWER)
        if name.startswith(".") or name.endswith(".") or ".." in name:
            name = ".".join(label for label in name.split(".") if label)
        return name
    labels, label, i = [], "", 0
    while i < len(field):
        ch, i = field[i], i + 1
        if ch == ".":
            if label:
                labels.append(label)
            label = ""
            continue
        if ch == "\\":
            if i == len(field):
                break  # tinydns-data drops a final backslash
            octal = _OCTAL.match(field, i)
            if octal:
                ch, i = chr(int(octal.group(), 8) & 0xFF), octal.end()
            else:
                ch, i = field[i], i + 1
        label += ch
    if label:
        labels.append(label)
    return ".".join(lb.translate(_IN_LABEL).translate(_LOWER) for lb in labels)


@dataclass(frozen=True)
class BaseData:
    path: Path
    text: str
    zones: set[str]  # given a SOA: Z and . lines, generic type 6
    names: dict[str, int]  # every name a line gives records, and its first line's number


def read_base(path: Path) -> BaseData:
    try:
        text = path.read_text(encoding="latin-1")
    except OSError as exc:
        raise PublishError(f"cannot read base_data {path}: {exc.strerror}") from None
    zones: set[str] = set()
    names: dict[str, int] = {}
    # split("\n"), not splitlines(): tinydns-data ends a line at \n only
    for number, raw in enumerate(text.split("\n"), 1):
        kind = raw[:1]
        if kind not in NAMED:
            continue
        line = raw.rstrip(" \t")  # as tinydns-data does
        end = line.find(":", 1)
        name = data_name(line[1:] if end < 0 else line[1:end])
        names.setdefault(name, number)
        generic = line[end + 1 :].split(":", 1)[0] if end > 0 else ""
        if kind in ("Z", ".") or (kind == ":" and generic == "6"):
            zones.add(name)
    return BaseData(path, text, zones, names)


def soa_zones(base_data: Path) -> set[str]:
    """The zones base_data gives a SOA: `Z` and `.` lines, and generic type 6."""
    return read_base(base_data).zones


def overlap(base: BaseData, name: str) -> str:
    return (
        f"{name} is in base_data {base.path} (line {base.names[name]}): rotator owns that "
        "name; remove its lines from base_data"
    )


class TinydnsPublisher(FileBackend):
    def __init__(self, cfg: TinydnsConfig) -> None:
        self.cfg = cfg
        self.fragment = OwnedFile(cfg.directory / FRAGMENT, line_name)
        places = [str(r) for r in cfg.roots] + [" ".join(c[:2]) for c in cfg.deliver]
        self.where = f"tinydns data.cdb on {', '.join(places)}"
        super().__init__(cfg.directory / ".rotator.lock")

    def zone_problem(self, zone: str) -> str | None:
        try:
            served = soa_zones(self.cfg.base_data)
        except PublishError as exc:
            return exc.reason
        return None if zone in served else self._unserved(zone)

    def _unserved(self, zone: str) -> str:
        return f"no SOA for {zone} in {self.cfg.base_data}: add its Z (or .) and NS lines there"

    def rebuild(self, zones: dict[str, list[RecordChange]]) -> dict[str, str | PublishError]:
        base = read_base(self.cfg.base_data)
        answers: dict[str, str | PublishError] = {}
        owned = self.fragment.load()
        for zone, changes in zones.items():
            try:
                if zone not in base.zones:
                    raise PublishError(self._unserved(zone))
                lines = [
                    (record_name(c.name), None if c.text is None else data_line(c, self.cfg.tcp))
                    for c in changes
                ]
                taken = next((name for name, _ in lines if name in base.names), None)
                if taken is not None:
                    raise PublishError(overlap(base, taken))
            except PublishError as exc:
                answers[zone] = exc
                continue
            for name, line in lines:
                if line is None:
                    owned.pop(name, None)
                else:
                    owned[name] = line
            answers[zone] = self.where
        if len(answers) == sum(isinstance(a, PublishError) for a in answers.values()):
            return answers  # nothing to build
        # a name rotator owns from an earlier batch, in any zone, that base_data took since:
        # data.cdb holds every zone, so nothing is built until it is gone
        taken_since = owned.keys() & base.names.keys()
        if taken_since:
            refused = PublishError(overlap(base, min(taken_since, key=base.names.__getitem__)))
            return {z: refused if isinstance(a, str) else a for z, a in answers.items()}
        self._build(owned, base.text)
        return answers

    def _build(self, owned: dict[str, str], base: str) -> None:
        cfg = self.cfg
        write_atomic(self.fragment.path, owned.values())
        self.fragment.written(owned)
        tail = "" if not base or base.endswith("\n") else "\n"
        write_atomic(cfg.directory / "data", itertools.chain([base, tail], owned.values()))
        run([str(cfg.tinydns_data)], "tinydns-data", cfg.timeout, cwd=cfg.directory)
        self._install(cfg.directory / "data.cdb")

    def _install(self, cdb: Path) -> None:
        """data.cdb onto every server at once; the first failure names how many missed it."""
        jobs = [(str(r), lambda r=r: _copy_into(cdb, r)) for r in self.cfg.roots] + [
            (" ".join(c[:2]), lambda c=c: run(c, "deliver", self.cfg.timeout, stdin=cdb))
            for c in self.cfg.deliver
        ]
        with ThreadPoolExecutor(max_workers=min(8, len(jobs))) as pool:
            futures = [(where, pool.submit(job)) for where, job in jobs]
        failed = []
        for where, future in futures:
            exc = future.exception()
            if isinstance(exc, PublishError):
                failed.append((where, exc))
            elif exc is not None:
                raise exc
        if failed:
            where, first = failed[0]
            raise PublishError(
                f"data.cdb not installed on {len(failed)} of {len(jobs)} servers: {where}: "
                f"{first.reason}",
                first.code,
            )


def _copy_into(cdb: Path, root: Path) -> None:
    """As tinydns-data itself: a temp file in root, then renamed to data.cdb."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".data.cdb.", dir=root)
    except OSError as exc:
        raise PublishError(f"cannot write in {root}: {exc.strerror}", os_reason(exc)) from None
    try:
        with os.fdopen(fd, "wb") as out, cdb.open("rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
            os.fchmod(out.fileno(), 0o644)
            os.fsync(out.fileno())
        os.replace(tmp, root / "data.cdb")
        sync_dir(root)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        why = f"cannot install {root}/data.cdb: {exc.strerror}"
        raise PublishError(why, os_reason(exc)) from None


def from_config(cfg: BackendConfig) -> Publisher:
    assert isinstance(cfg, TinydnsConfig)
    return TinydnsPublisher(cfg)
