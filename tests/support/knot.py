"""A Knot DNS secondary for the tests: a second nameserver implementation beside BIND."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rdatatype

from rotator.demo.localdns import PRIMARY, free_port
from rotator.demo.processes import stop_process, track
from rotator.domain.errors import RotatorError


class KnotSecondary:
    """A Knot DNS (knotd) secondary of a BindPair's primary: a second implementation that
    must agree before a key counts as verified. Listens on 127.0.0.1 at its own port."""

    def __init__(self, base_dir: Path, zones: Sequence[str], primary: tuple[str, int]) -> None:
        self.base = Path(base_dir)
        self.zones = list(zones)
        self.primary = primary
        self.address = PRIMARY
        self.port = free_port((PRIMARY,), avoid=primary[1])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> KnotSecondary:
        knotd = shutil.which("knotd") or "/usr/sbin/knotd"
        if not os.path.exists(knotd):
            raise RotatorError("Knot DNS is not installed: apt-get install knot")
        for sub in ("db", "zones"):  # knotd does not create its storage directories
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        ip, port = self.primary
        zones = "\n".join(
            f"  - domain: {z}\n    master: primary\n    acl: notify_from_primary"
            for z in self.zones
        )
        (self.base / "knot.conf").write_text(
            f"""server:
    rundir: "{self.base}"
    listen: {self.address}@{self.port}
database:
    storage: "{self.base}/db"
log:
  - target: "{self.base}/knot.log"
    any: info
remote:
  - id: primary
    address: {ip}@{port}
acl:
  - id: notify_from_primary
    address: {ip}
    action: notify
template:
  - id: default
    storage: "{self.base}/zones"
    zonefile-load: none
    journal-content: all
zone:
{zones}
"""
        )
        out = open(self.base / "stderr.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [knotd, "-c", str(self.base / "knot.conf")],
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
        )
        out.close()
        track(self.proc)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RotatorError(f"knotd exited {self.proc.returncode}")
            if all(self._serial(z) is not None for z in self.zones):
                return self
            time.sleep(0.1)
        self.stop()
        raise RotatorError("knotd did not transfer the zones within 20s")

    def _serial(self, zone: str) -> int | None:
        q = dns.message.make_query(zone, dns.rdatatype.SOA)
        q.flags &= ~dns.flags.RD
        try:
            r = dns.query.udp(q, self.address, port=self.port, timeout=0.5)
        except (OSError, dns.exception.DNSException):
            return None
        for rrset in r.answer:
            if rrset.rdtype == dns.rdatatype.SOA:
                return int(rrset[0].serial)
        return None

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process(self.proc)
        self.proc = None
