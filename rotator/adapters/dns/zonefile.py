"""kind = "zonefile": rotator owns `<directory>/<zone>.zone`: the operator's header (read
with dnspython, so a mistake there is one line) with rotator's SOA serial, then rotator's
records one line each below a marker. Once per batch each changed zone's file is rendered,
checked and renamed into place, then the reload command is run."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.name
import dns.rdatatype
import dns.zone

from ...config.backends import BackendConfig
from ...config.backends.zonefile import ZoneFileConfig
from ...domain.errors import PublishError
from ...domain.record import split_strings
from ...ports import Publisher, RecordChange
from .owned import FileBackend, OwnedFile, record_name, run, write_atomic

MARKER = "; rotator's records below, one line per name (rewritten on every publish)"
MAX_SERIAL = 2**32 - 1
_QUOTE = {ord('"'): '\\"', ord("\\"): "\\\\"} | {
    c: f"\\{c:03d}" for c in (*range(32), *range(127, 256))
}
_DATED = re.compile(r"^(19[9]\d|2[01]\d\d)(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])\d\d$")


def next_serial(old: int | None, header: int, now: float) -> int:
    """Above the last one rotator wrote and the header's (the first write may replace a
    file that served the header's serial), and at least the clock in the header's style:
    YYYYMMDDnn if it is one, else seconds since 1970."""
    if _DATED.match(str(header)):
        floor = int(time.strftime("%Y%m%d", time.gmtime(now))) * 100
    else:
        floor = int(now)
    serial = max(header + 1, floor, 0 if old is None else old + 1)
    if serial > MAX_SERIAL:
        raise PublishError(
            f"the SOA serial would pass {MAX_SERIAL}: reset it (RFC 1982) in the header "
            "and the zone file, and on every secondary"
        )
    return serial


def zone_line(change: RecordChange) -> str:
    name = record_name(change.name)
    assert change.text is not None
    try:
        strings = split_strings(change.text)
    except UnicodeEncodeError:
        raise PublishError(f"record {change.name}: the text is not ASCII") from None
    texts = " ".join(f'"{s.decode("ascii").translate(_QUOTE)}"' for s in strings)
    return f"{name}. {change.ttl} IN TXT {texts}\n"


def line_name(line: str) -> str:
    return line[: line.index(" ")].rstrip(".")


@dataclass(frozen=True)
class Header:
    soa: str  # "TTL IN SOA mname rname", the serial and timers follow
    timers: str  # "refresh retry expire minimum"
    serial: int
    lines: list[str]  # every other record, absolute names
    names: set[str]  # owner names, as record_name writes them


def read_header(path: Path, zone: str) -> Header:
    try:
        parsed = dns.zone.from_file(str(path), origin=zone, relativize=False)
    except FileNotFoundError:
        raise PublishError(
            f"no header {path} for zone {zone}: write its SOA and NS records there"
        ) from None
    except OSError as exc:
        raise PublishError(f"header {path}: {exc.strerror}") from None
    except (dns.exception.DNSException, ValueError) as exc:
        raise PublishError(f"header {path} for zone {zone}: {exc}") from None
    origin = dns.name.from_text(zone)
    soa_set = parsed.get_rdataset(origin, dns.rdatatype.SOA)
    assert soa_set is not None  # from_file checks the origin has a SOA and NS
    soa = soa_set[0]
    lines, names = [], set()
    for name, rdataset in parsed.iterate_rdatasets():
        names.add(name.to_text(omit_final_dot=True).lower())
        if rdataset.rdtype != dns.rdatatype.SOA:
            lines.append(rdataset.to_text(name) + "\n")
    return Header(
        soa=f"{soa_set.ttl} IN SOA {soa.mname} {soa.rname}",
        timers=f"{soa.refresh} {soa.retry} {soa.expire} {soa.minimum}",
        serial=int(soa.serial),
        lines=lines,
        names=names,
    )


def written_serial(path: Path) -> int | None:
    """The serial of the file rotator wrote last (its SOA line, above the marker)."""
    try:
        with path.open(encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(MARKER):
                    break
                fields = line.split()
                if len(fields) > 6 and fields[3] == "SOA":
                    return int(fields[6])
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise PublishError(f"cannot read the serial of {path}: {exc}") from None
    return None


class ZoneFilePublisher(FileBackend):
    def __init__(self, cfg: ZoneFileConfig) -> None:
        self.cfg = cfg
        self.per_zone = any("{zone}" in a for a in cfg.reload)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="zonefile")
        self._owned: dict[str, OwnedFile] = {}
        super().__init__(cfg.directory / ".rotator.lock")

    def header(self, zone: str) -> Path:
        return Path(self.cfg.header.replace("{zone}", zone))

    def file(self, zone: str) -> Path:
        return self.cfg.directory / f"{zone}.zone"

    def zone_problem(self, zone: str) -> str | None:
        try:
            read_header(self.header(zone), zone)
        except PublishError as exc:
            return exc.reason
        return None

    def rebuild(self, zones: dict[str, list[RecordChange]]) -> dict[str, str | PublishError]:
        answers: dict[str, str | PublishError] = {}
        for zone, changes in zones.items():
            try:
                answers[zone] = self._write(zone, changes)
            except PublishError as exc:
                answers[zone] = exc
        written = [z for z, a in answers.items() if isinstance(a, str)]
        if self.per_zone:
            failures = dict(zip(written, self._pool.map(self._reload, written), strict=True))
        else:  # one reload for the whole batch
            failures = dict.fromkeys(written, self._reload(None) if written else None)
        for zone, failed in failures.items():
            if failed is not None:
                answers[zone] = failed
        return answers

    def _write(self, zone: str, changes: Sequence[RecordChange]) -> str:
        header = read_header(self.header(zone), zone)
        path = self.file(zone)
        owned_file = self._owned.setdefault(zone, OwnedFile(path, line_name, after=MARKER))
        owned = owned_file.load()
        for change in changes:
            name = record_name(change.name)
            if name in header.names:
                raise PublishError(
                    f"{name} is in the header {self.header(zone)}: rotator owns that name; "
                    "remove it from the header"
                )
            if change.text is None:
                owned.pop(name, None)
            else:
                owned[name] = zone_line(change)
        # a name rotator wrote before that the header has taken since: the server would
        # serve both records
        taken = sorted(set(owned) & header.names)
        if taken:
            raise PublishError(
                f"{taken[0]} is in the header {self.header(zone)}: rotator owns that name; "
                "remove it from the header"
            )
        serial = next_serial(written_serial(path), header.serial, time.time())
        parts = [
            f"; written by rotator from {self.header(zone)}: edit that, not this file\n",
            f"$ORIGIN {zone}.\n",
            f"{zone}. {header.soa} {serial} {header.timers}\n",
            *header.lines,
            MARKER + "\n",
            *owned.values(),
        ]
        check = self.cfg.check

        def checked(tmp: Path) -> None:
            if check:
                command = [a.replace("{zone}", zone).replace("{file}", str(tmp)) for a in check]
                run(command, f"check of {zone}", self.cfg.timeout)

        write_atomic(path, parts, check=checked)
        owned_file.written(owned)
        return f"{path} serial {serial}"

    def _reload(self, zone: str | None) -> PublishError | None:
        command = [a.replace("{zone}", zone or "") for a in self.cfg.reload]
        try:
            run(command, f"reload of {zone}" if zone else "reload", self.cfg.timeout)
        except PublishError as exc:
            return exc
        return None


def from_config(cfg: BackendConfig) -> Publisher:
    assert isinstance(cfg, ZoneFileConfig)
    return ZoneFilePublisher(cfg)
