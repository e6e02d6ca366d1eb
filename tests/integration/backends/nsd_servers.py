"""kind = "zonefile": a real NSD primary loading the zone file rotator writes (checked with
nsd-checkzone, reloaded with nsd-control over its TLS control channel, keys made by
nsd-control-setup) and an NSD secondary fed by its NOTIFY and AXFR, both on 127.0.0.1 high
ports, each with its own nsd.conf in a temp directory."""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rdatatype

from rotator.demo.localdns import PRIMARY, free_port
from rotator.demo.processes import stop_process, track

ZONE = "dkim.zonefile.test"
UNSERVED = "elsewhere.zonefile.test"
NSD = "/usr/sbin/nsd"
HEADER = f"""$TTL 60
@ IN SOA ns1 hostmaster ( 1 2 1 600 2 )
@ IN NS ns1
@ IN NS ns2
ns1 IN A {PRIMARY}
ns2 IN A {PRIMARY}
"""


def server_conf(d: Path, port: int) -> list[str]:
    return [
        "server:",
        f"  ip-address: {PRIMARY}@{port}",
        f'  pidfile: "{d}/nsd.pid"',
        f'  zonesdir: "{d}"',
        f'  xfrdfile: "{d}/xfrd.state"',
        f'  xfrdir: "{d}"',
        f'  zonelistfile: "{d}/zone.list"',
        f'  logfile: "{d}/nsd.log"',
        '  database: ""',
        '  username: ""',
        '  chroot: ""',
        "  verbosity: 1",
        "  server-count: 1",
    ]


def control_conf(port: int, keys: Path, client: Path) -> list[str]:
    """nsd-control's TLS: the server's key pair, and the client's (`client` may be another
    nsd-control-setup's: a wrong credential)."""
    return [
        "remote-control:",
        "  control-enable: yes",
        f"  control-interface: {PRIMARY}",
        f"  control-port: {port}",
        f'  server-key-file: "{keys}/nsd_server.key"',
        f'  server-cert-file: "{keys}/nsd_server.pem"',
        f'  control-key-file: "{client}/nsd_control.key"',
        f'  control-cert-file: "{client}/nsd_control.pem"',
    ]


def three_ports() -> tuple[int, int, int]:
    ports: list[int] = []
    while len(ports) < 3:
        port = free_port((PRIMARY,))
        if port not in ports:
            ports.append(port)
    return ports[0], ports[1], ports[2]


@functools.cache
def control_keys(name: str) -> Path:
    """nsd-control-setup's keys, made once per test run (each makes RSA keys: seconds)."""
    made = Path(tempfile.mkdtemp(prefix=f"nsd-{name}-"))
    atexit.register(shutil.rmtree, made, True)
    subprocess.run(
        ["nsd-control-setup", "-d", str(made)], check=True, capture_output=True, timeout=60
    )
    return made


class NsdServers:
    kind = "zonefile"
    zone = ZONE
    unserved_zone = UNSERVED

    def __init__(self, base: Path, start_timeout: float = 15.0) -> None:
        self.base = base
        self.port, self.secondary_port, control = three_ports()
        self.primary_dir, self.secondary_dir = base / "primary", base / "secondary"
        self.zones = self.primary_dir / "zones"  # rotator's directory
        self.headers = base / "headers"
        for d in (self.zones, self.secondary_dir, self.headers):
            d.mkdir(parents=True)
        for keys in ("keys", "otherkeys"):
            shutil.copytree(control_keys(keys), base / keys)
        (self.headers / f"{ZONE}.zone").write_text(HEADER)
        (self.zones / f"{ZONE}.zone").write_text(HEADER)  # served from the start
        zone = [
            "zone:",
            f'  name: "{ZONE}"',
            f'  zonefile: "{self.zones}/{ZONE}.zone"',
            f"  notify: {PRIMARY}@{self.secondary_port} NOKEY",
            f"  provide-xfr: {PRIMARY} NOKEY",
        ]
        common = server_conf(self.primary_dir, self.port)
        self.conf = self.primary_dir / "nsd.conf"
        self.conf.write_text(
            "\n".join(common + control_conf(control, base / "keys", base / "keys") + zone) + "\n"
        )
        self.wrong_conf = self.primary_dir / "nsd-wrong-client.conf"
        self.wrong_conf.write_text(
            "\n".join(common + control_conf(control, base / "keys", base / "otherkeys")) + "\n"
        )
        (self.secondary_dir / "nsd.conf").write_text(
            "\n".join(
                [
                    *server_conf(self.secondary_dir, self.secondary_port),
                    "remote-control:",
                    "  control-enable: no",
                    "zone:",
                    f'  name: "{ZONE}"',
                    f'  zonefile: "{ZONE}.zone"',
                    f"  allow-notify: {PRIMARY} NOKEY",
                    f"  request-xfr: AXFR {PRIMARY}@{self.port} NOKEY",
                ]
            )
            + "\n"
        )
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            self._start("primary", self.conf, self.port, start_timeout)
            self._start(
                "secondary", self.secondary_dir / "nsd.conf", self.secondary_port, start_timeout
            )
        except BaseException:
            self.stop()
            raise

    def _start(self, role: str, conf: Path, port: int, timeout: float) -> None:
        log = open(conf.parent / "stderr.log", "ab")  # noqa: SIM115 - owned by the process
        proc = subprocess.Popen(
            [NSD, "-d", "-c", str(conf)], stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        log.close()
        self.procs[role] = proc
        track(proc)
        deadline = time.monotonic() + timeout
        while not self._serves(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (conf.parent / "stderr.log").read_text(errors="replace")[-400:]
                how = f"exited {proc.returncode}" if proc.poll() is not None else "timed out"
                raise RuntimeError(f"nsd ({role}) {how} before it served {ZONE}: {tail}")
            time.sleep(0.05)

    @staticmethod
    def _serves(port: int) -> bool:
        q = dns.message.make_query(ZONE, dns.rdatatype.SOA)
        q.flags &= ~dns.flags.RD
        try:
            return bool(dns.query.udp(q, PRIMARY, port=port, timeout=0.3).answer)
        except (OSError, dns.exception.DNSException):
            return False

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [(PRIMARY, self.port), (PRIMARY, self.secondary_port)]

    def server(self, which: str) -> tuple[str, int]:
        return self.addresses[0 if which == "primary" else 1]

    def backend_table(self, workdir: Path, wrong_credential: bool = False) -> str:
        conf = self.wrong_conf if wrong_credential else self.conf
        nameservers = [f"{ip}:{port}" for ip, port in self.addresses]
        header = str(self.headers / "{zone}.zone")
        return (  # JSON's strings and lists are TOML's too
            f'[[dns.backends]]\nname = "nsd"\nkind = "zonefile"\n'
            f"zones = {json.dumps([ZONE, UNSERVED])}\ndirectory = {json.dumps(str(self.zones))}\n"
            f"header = {json.dumps(header)}\n"
            f'check = ["nsd-checkzone", "{{zone}}", "{{file}}"]\n'
            f'reload = ["nsd-control", "-c", {json.dumps(str(conf))}, "reload", "{{zone}}"]\n'
            f"nameservers = {json.dumps(nameservers)}\ntimeout = 10\n"
        )

    def stop(self) -> None:
        for role in ("secondary", "primary"):
            proc = self.procs.pop(role, None)
            if proc is None:
                continue
            stop_process(proc, grace=10)


def start_nsd(base: Path) -> NsdServers:
    return NsdServers(base)
