"""kind = "tinydns": two real tinydns processes, each serving its own root: the first gets
data.cdb copied in (`roots`), the second through a deliver command (data.cdb on stdin, as
over ssh). tinydns listens on UDP port 53 of $IP and nowhere else, so each gets a loopback
address of its own (127.0.0.0/8 is all local on Linux: no alias needed) and must be started
as root, which it needs anyway to chroot; it then runs as nobody."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import time
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rdatatype
import pytest

from rotator.demo.processes import stop_process, track

ZONE = "dkim.tinydns.test"
UNSERVED = "elsewhere.tinydns.test"
TINYDNS = "/usr/sbin/tinydns"
TINYDNS_DATA = "/usr/sbin/tinydns-data"
NOBODY = 65534


def free_loopback(avoid: tuple[str, ...] = ()) -> str:
    """A loopback address whose UDP port 53 is free (away from 127.0.0.x, which BIND uses)."""
    for _ in range(200):
        octets = (secrets.randbelow(180) + 64, secrets.randbelow(256), secrets.randbelow(254) + 1)
        ip = "127.{}.{}.{}".format(*octets)
        if ip in avoid:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind((ip, 53))
            except OSError:
                continue
        return ip
    raise RuntimeError("no loopback address with a free port 53")


def install_command(root: Path, user: int | None = None) -> list[str]:
    """What a deliver command does on the server's side: data.cdb from stdin, renamed in."""
    # tinydns runs as nobody: the file must be readable whatever the daemon's umask
    script = f"umask 022 && cat > {root}/data.cdb.tmp && mv -f {root}/data.cdb.tmp {root}/data.cdb"
    become = [] if user is None else ["setpriv", f"--reuid={user}", f"--regid={user}"]
    return [*become, *(["--clear-groups"] if become else []), "sh", "-c", script]


class TinydnsServers:
    kind = "tinydns"
    zone = ZONE
    unserved_zone = UNSERVED

    def __init__(self, base: Path, start_timeout: float = 10.0) -> None:
        if os.geteuid() != 0:
            pytest.skip("tinydns binds port 53 and chroots: run the tinydns tests as root")
        self.base = base
        self.build = base / "build"  # rotator's directory, kept across restarts of rotator
        self.build.mkdir(parents=True)
        first = free_loopback()
        self.ips = [first, free_loopback((first,))]
        self.roots = [base / f"server{i}" / "root" for i in (1, 2)]
        self.base_data = base / "base.data"
        self.base_data.write_text(
            f"Z{ZONE}:ns1.{ZONE}.:hostmaster.{ZONE}.::2:1:600:2:60\n"
            f"&{ZONE}::ns1.{ZONE}.:60\n&{ZONE}::ns2.{ZONE}.:60\n"
            f"+ns1.{ZONE}:{self.ips[0]}:60\n+ns2.{ZONE}:{self.ips[1]}:60\n"
        )
        seed = base / "seed"
        seed.mkdir()
        (seed / "data").write_bytes(self.base_data.read_bytes())
        subprocess.run([TINYDNS_DATA], cwd=seed, check=True, timeout=30)
        self.procs: list[subprocess.Popen[bytes]] = []
        try:
            for ip, root in zip(self.ips, self.roots, strict=True):
                root.mkdir(parents=True)
                (root / "data.cdb").write_bytes((seed / "data.cdb").read_bytes())
                self._start(ip, root, start_timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, ip: str, root: Path, timeout: float) -> None:
        env = {"IP": ip, "ROOT": str(root), "UID": str(NOBODY), "GID": str(NOBODY)}
        log = open(root.parent / "tinydns.log", "ab")  # noqa: SIM115 - owned by the process
        proc = subprocess.Popen(
            [TINYDNS], env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        log.close()
        self.procs.append(proc)
        track(proc)
        deadline = time.monotonic() + timeout
        while not self._answers(ip):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (root.parent / "tinydns.log").read_text(errors="replace")[-300:]
                raise RuntimeError(f"tinydns on {ip} did not answer within {timeout:g}s: {tail}")
            time.sleep(0.05)

    @staticmethod
    def _answers(ip: str) -> bool:
        q = dns.message.make_query(ZONE, dns.rdatatype.SOA)
        q.flags &= ~dns.flags.RD
        try:
            return bool(dns.query.udp(q, ip, port=53, timeout=0.3).answer)
        except (OSError, dns.exception.DNSException):
            return False

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [(ip, 53) for ip in self.ips]

    def server(self, which: str) -> tuple[str, int]:
        return self.addresses[0 if which == "primary" else 1]

    def backend_table(self, workdir: Path, wrong_credential: bool = False) -> str:
        if wrong_credential:  # the deliveries run as a user the roots do not let in
            roots: list[str] = []
            deliver = [install_command(r, NOBODY) for r in self.roots]
        else:
            roots, deliver = [str(self.roots[0])], [install_command(self.roots[1])]
        nameservers = [f"{ip}:{port}" for ip, port in self.addresses]
        return (  # JSON's strings and lists are TOML's too
            f'[[dns.backends]]\nname = "tinydns"\nkind = "tinydns"\n'
            f"zones = {json.dumps([ZONE, UNSERVED])}\ndirectory = {json.dumps(str(self.build))}\n"
            f'base_data = {json.dumps(str(self.base_data))}\ntinydns_data = "{TINYDNS_DATA}"\n'
            f"roots = {json.dumps(roots)}\ndeliver = {json.dumps(deliver)}\n"
            f"nameservers = {json.dumps(nameservers)}\ntimeout = 10\n"
        )

    def stop(self) -> None:
        for proc in self.procs:
            stop_process(proc)
        self.procs = []


def start_tinydns(base: Path) -> TinydnsServers:
    return TinydnsServers(base)
