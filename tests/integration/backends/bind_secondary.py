"""A BIND secondary of another implementation's primary (PowerDNS, ...): it takes the
primary's NOTIFY and pulls the zones by AXFR/IXFR, as a real deployment's second
nameserver would."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rdatatype

from rotator.demo.localdns import named_binary
from rotator.demo.processes import stop_process, track
from rotator.domain.errors import RotatorError


class BindSecondary:
    def __init__(
        self,
        base: Path,
        zones: Sequence[str],
        primary: tuple[str, int],
        address: tuple[str, int],
    ) -> None:
        self.base = Path(base)
        self.zones = [z.rstrip(".").lower() for z in zones]
        self.primary = primary
        self.address = address
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> BindSecondary:
        self.base.mkdir(parents=True, exist_ok=True)
        d, (ip, port), (pip, pport) = self.base, self.address, self.primary
        conf = [
            "options {",
            f'  directory "{d}";',
            f'  pid-file "{d}/named.pid";',
            f"  listen-on port {port} {{ {ip}; }};",
            "  listen-on-v6 { none; };",
            "  recursion no;",
            "  dnssec-validation no;",
            "  check-names secondary ignore;",  # NS hosts under _domainkey carry an underscore
            "  notify no;",
            f"  transfer-source {ip};",
            "  min-refresh-time 1;",
            "  min-retry-time 1;",
            "};",
            "controls { };",
            f'logging {{ channel main {{ file "{d}/named.log"; severity info; '
            "print-time yes; }; category default { main; }; };",
        ]
        conf += [
            f'zone "{z}" {{ type secondary; file "{d}/{z}.db"; '
            f"primaries {{ {pip} port {pport}; }}; allow-notify {{ {pip}; }}; }};"
            for z in self.zones
        ]
        (d / "named.conf").write_text("\n".join(conf) + "\n")
        cmd = [named_binary(d), "-g", "-n", "1", "-c", str(d / "named.conf")]
        if os.geteuid() == 0:
            cmd[1:1] = ["-u", "root"]
        out = open(d / "stderr.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        out.close()
        track(self.proc)
        deadline = time.monotonic() + timeout
        pending = list(self.zones)
        while pending:
            if self.proc.poll() is not None:
                raise RotatorError(
                    f"named (secondary) exited {self.proc.returncode}: {self.tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RotatorError(f"named (secondary) did not transfer {pending} in {timeout:g}s")
            if self.serial(pending[-1]) is not None:
                pending.pop()
            else:
                time.sleep(0.05)
        return self

    def serial(self, zone: str) -> int | None:
        q = dns.message.make_query(zone, dns.rdatatype.SOA)
        q.flags &= ~dns.flags.RD
        try:
            r = dns.query.udp(q, self.address[0], port=self.address[1], timeout=0.5)
        except (OSError, dns.exception.DNSException):
            return None
        for rrset in r.answer:
            if rrset.rdtype == dns.rdatatype.SOA:
                return int(rrset[0].serial)
        return None

    def tail(self, n: int = 8) -> str:
        lines: list[str] = []
        for name in ("stderr.log", "named.log"):
            with contextlib.suppress(FileNotFoundError):
                lines += (self.base / name).read_text(errors="replace").splitlines()
        return " | ".join(lines[-n:])

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc)
