"""BIND's named on loopback, for the demo and the tests: one server's named.conf, its
process (ready once it answers SOA for every zone, stopped by its pid), and the one BIND
secondary every setup uses, of a BIND primary or another implementation's (PowerDNS, ...).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rdatatype

from ..domain.errors import RotatorError
from .processes import stop_process, track

Address = tuple[str, int]  # (ip, port)


def named_binary(workdir: Path | None = None) -> str:
    found = shutil.which("named") or (
        "/usr/sbin/named" if os.path.exists("/usr/sbin/named") else None
    )
    if found is None:
        raise RotatorError("BIND's named is not installed: apt-get install bind9")
    if workdir is not None and apparmor_enabled():
        # Debian's AppArmor profile for /usr/sbin/named only lets it read /etc/bind and
        # /var/cache/bind; a private copy of the binary runs unconfined in our own directory.
        copy = workdir / "named"
        if not copy.exists():
            shutil.copy2(found, copy)
        return str(copy)
    return found


def apparmor_enabled() -> bool:
    try:
        return Path("/sys/module/apparmor/parameters/enabled").read_text().strip() == "Y"
    except OSError:
        return False


def named_conf(
    directory: Path,
    listen: Address,
    options: Sequence[str],
    zones: Sequence[str],
    preamble: str = "",
) -> str:
    """named.conf of an authoritative-only server on `listen` alone, keeping its files and
    log in `directory`. `options` are lines inside options { }, `zones` zone statements,
    `preamble` statements before options (e.g. a TSIG key)."""
    ip, port = listen
    lines = [
        *([preamble] if preamble else []),
        "options {",
        f'  directory "{directory}";',
        f'  pid-file "{directory}/named.pid";',
        f"  listen-on port {port} {{ {ip}; }};",
        "  listen-on-v6 { none; };",
        "  recursion no;",
        "  dnssec-validation no;",
        *(f"  {line}" for line in options),
        "};",
        "controls { };",  # no rndc: a server is stopped by its pid
        f'logging {{ channel main {{ file "{directory}/named.log"; severity info; '
        "print-time yes; }; category default { main; }; };",
        *zones,
    ]
    return "\n".join(lines) + "\n"


def soa_serial(server: Address, zone: str, timeout: float = 0.5) -> int | None:
    """The zone's serial as `server` answers it; None while it does not serve the zone."""
    q = dns.message.make_query(zone, dns.rdatatype.SOA)
    q.flags &= ~dns.flags.RD
    try:
        r = dns.query.udp(q, server[0], port=server[1], timeout=timeout)
    except (OSError, dns.exception.DNSException):
        return None
    for rrset in r.answer:
        if rrset.rdtype == dns.rdatatype.SOA:
            return int(rrset[0].serial)
    return None


class Named:
    """One named in the foreground on `conf`, written to `directory`/named.conf when it
    starts. `binary_dir` holds the private copy of named under AppArmor (see named_binary)."""

    def __init__(
        self,
        role: str,
        directory: Path,
        address: Address,
        zones: Sequence[str],
        conf: str,
        binary_dir: Path | None = None,
    ) -> None:
        self.role = role  # in error messages: named (primary), named (secondary)
        self.directory = Path(directory)
        self.address = address
        self.zones = [z.rstrip(".").lower() for z in zones]
        self.conf = conf
        self.binary_dir = binary_dir or self.directory
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> float:
        """Run named until it serves every zone (a secondary: until it has transferred
        them); the seconds that took. If it does not, it is stopped and the error quotes
        its logs."""
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        (d / "named.conf").write_text(self.conf)
        cmd = [named_binary(self.binary_dir), "-g", "-n", "1", "-c", str(d / "named.conf")]
        if os.geteuid() == 0:
            cmd[1:1] = ["-u", "root"]
        out = open(d / "stderr.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        out.close()
        track(self.proc)
        started = time.monotonic()
        try:
            self._wait_served(self.proc, started + timeout, timeout)
        except BaseException:
            self.stop()
            raise
        return time.monotonic() - started

    def _wait_served(self, proc: subprocess.Popen[bytes], deadline: float, timeout: float) -> None:
        pending = list(self.zones)
        while pending and time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RotatorError(f"named ({self.role}) exited {proc.returncode}: {self.tail()}")
            while pending and self.serial(pending[-1]) is not None:
                pending.pop()  # a round stops at the first zone not served yet
            if pending:
                time.sleep(0.05)
        if pending:
            raise RotatorError(
                f"named ({self.role}) did not serve {sorted(pending)[:5]} within "
                f"{timeout:g}s: {self.tail()}"
            )

    def serial(self, zone: str) -> int | None:
        return soa_serial(self.address, zone)

    def tail(self, n: int = 8) -> str:
        """The last lines of its logs, for error messages."""
        lines: list[str] = []
        for name in ("stderr.log", "named.log"):
            with contextlib.suppress(FileNotFoundError):
                lines += (self.directory / name).read_text(errors="replace").splitlines()
        return " | ".join(lines[-n:])

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc)


def bind_secondary(
    directory: Path,
    zones: Sequence[str],
    primary: Address,
    address: Address,
    options: Sequence[str] = ("notify no;",),
    preamble: str = "",
    binary_dir: Path | None = None,
) -> Named:
    """A BIND secondary on `address` of `primary`'s zones: it takes the primary's NOTIFY
    (nobody else's) and pulls the zones by AXFR/IXFR, as a deployment's second nameserver
    would. `options` are further option lines; by default it notifies nobody in turn."""
    directory = Path(directory)
    zones = [z.rstrip(".").lower() for z in zones]
    ip, (pip, pport) = address[0], primary
    own = [
        # NS hosts inside an NS-delegated "myesp._domainkey.<domain>" zone carry an
        # underscore; real deployments use hosts like dkim1.myesp.net instead.
        "check-names secondary ignore;",
        f"transfer-source {ip};",  # the address the primary allows transfers to
        # the zones' SOA refresh and retry of seconds as they are (BIND's floor is minutes)
        "min-refresh-time 1;",
        "min-retry-time 1;",
        *options,
    ]
    statements = [
        f'zone "{z}" {{ type secondary; file "{directory}/{z}.db"; '
        f"primaries {{ {pip} port {pport}; }}; allow-notify {{ {pip}; }}; }};"
        for z in zones
    ]
    conf = named_conf(directory, address, own, statements, preamble)
    return Named("secondary", directory, address, zones, conf, binary_dir)
