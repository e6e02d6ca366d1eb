"""A real BIND 9 primary + secondary on loopback, for the demo and the integration tests.

The primary listens on 127.0.0.1 and the secondary on 127.0.0.2, both on one free high port,
so the zones' NS records (ns1 -> 127.0.0.1, ns2 -> 127.0.0.2) lead the verifier to both for
real. named only listens on addresses configured on an interface, so as root the 127.0.0.2
alias is added to `lo` (still loopback); without root the secondary moves to 127.0.0.1 on a
second port and the verifier is given both addresses explicitly. The primary takes
TSIG-signed RFC 2136 updates and NOTIFYs the secondary, which pulls IXFR. Every process
started here is stopped by stop() / the context manager / atexit.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from ..domain.errors import RotatorError
from .named import Named, bind_secondary, named_conf, soa_serial

PRIMARY = "127.0.0.1"
SECONDARY = "127.0.0.2"


def has_address(addr: str) -> bool:
    try:
        out = subprocess.run(
            ["ip", "-4", "-o", "addr", "show", "dev", "lo"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout
    except OSError:
        return False
    return f" {addr}/" in out


def ensure_loopback_alias(addr: str = SECONDARY) -> bool:
    """Make `addr` an address of lo (root only). True if named can listen on it."""
    if has_address(addr):
        return True
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    subprocess.run(
        ["ip", "addr", "add", f"{addr}/32", "dev", "lo"],
        capture_output=True,
        timeout=5,
        check=False,
    )
    return has_address(addr)


def free_port(addrs: Sequence[str] = (PRIMARY, SECONDARY), avoid: int = 0) -> int:
    """A port free for UDP and TCP on the given loopback addresses."""
    for _ in range(200):
        port = secrets.randbelow(40000) + 20000
        if port == avoid:
            continue
        try:
            for addr in addrs:
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    with socket.socket(socket.AF_INET, kind) as s:
                        s.bind((addr, port))
        except OSError:
            continue
        return port
    raise RotatorError("no free port found on 127.0.0.1/127.0.0.2")


class BindPair:
    def __init__(
        self,
        base_dir: Path,
        zones: Sequence[str] = ("example.test",),
        tsig_name: str = "rotator-key",
        tsig_secret: str | None = None,
        ips: tuple[str, str] = (PRIMARY, SECONDARY),
        port: int | None = None,
        extra_records: dict[str, list[str]] | None = None,
        extra_secondaries: Sequence[tuple[str, int]] = (),
        update_policy: str | None = None,
        options: Sequence[str] = (),
        ns_names: Sequence[str] = (),
        start_timeout: float = 20.0,
    ) -> None:
        """`ips` and `port` let a second pair (say the customer's DNS on 127.0.0.3/.4) share
        the port of the first, so one nameserver_port reaches every authoritative server.
        `extra_records` adds zone-file lines (e.g. a delegation with glue) per zone.
        Many zones: `options` adds lines to both servers' options (e.g. "notify-rate 1000;"),
        `ns_names` replaces every zone's ns1/ns2.<zone> NS (with in-zone glue) by shared
        hosts (e.g. dkim1.myesp.test), whose A records go in some zone's extra_records."""
        self.base = Path(base_dir)
        self.zones = [z.rstrip(".").lower() for z in zones]
        self.tsig_name = tsig_name
        self.tsig_secret = tsig_secret or base64.b64encode(secrets.token_bytes(32)).decode()
        self.tsig_algorithm = "hmac-sha256"
        self.extra_records = extra_records or {}
        # e.g. 'grant KEY wildcard *._domainkey.ZONE. TXT;' ({key}/{zone} filled in); the
        # default lets the key update anything (tests need every name)
        self.update_policy = update_policy
        # more secondaries (another implementation, e.g. Knot) the primary notifies
        self.extra_secondaries = list(extra_secondaries)
        self.options = list(options)
        self.ns_names = [n.rstrip(".") for n in ns_names]
        self.start_timeout = start_timeout
        self.started_in: dict[str, float] = {}  # role -> seconds until it served every zone
        self.primary = ips[0]
        self.two_addresses = all(ensure_loopback_alias(ip) for ip in ips if ip != PRIMARY)
        if self.two_addresses:
            self.secondary = ips[1]
            self.port = self.secondary_port = port or free_port(ips)
        else:
            if port is not None:
                raise RotatorError(f"loopback aliases {ips} need root (ip addr add)")
            self.primary = self.secondary = PRIMARY
            self.port = free_port((PRIMARY,))
            self.secondary_port = free_port((PRIMARY,), avoid=self.port)
        self.named: dict[str, Named] = {}  # role -> its server, once start() wrote them

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """(ip, port) of the primary and the secondary."""
        return [(self.primary, self.port), (self.secondary, self.secondary_port)]

    def dns_config(self) -> str:
        """rotator.toml's [dns] lines for this pair: UPDATEs to the primary with the
        TSIG secret inline (a demo's; a real one names a secret file), checks on both."""
        return (
            f'primary = "{self.primary}:{self.port}"\n'
            f'tsig_name = "{self.tsig_name}"\n'
            f'tsig_secret = "{self.tsig_secret}"\n'
            f'tsig_algorithm = "{self.tsig_algorithm}"\n'
            "timeout = 2.0\n" + self.verifier_config()
        )

    def verifier_config(self) -> str:
        """rotator.toml [dns] lines that lead the verifier to both servers."""
        if self.two_addresses:
            # discovery for real: NS records -> A records -> query each at this port
            return f'nameserver_port = {self.port}\nresolver = ["{self.primary}:{self.port}"]\n'
        return (
            f'nameservers = ["{self.primary}:{self.port}", '
            f'"{self.secondary}:{self.secondary_port}"]\n'
        )

    # --- configuration ----------------------------------------------------------------

    def _write(self) -> None:
        d = self.base / "primary"
        d.mkdir(parents=True, exist_ok=True)
        key = (
            f'key "{self.tsig_name}" {{ algorithm {self.tsig_algorithm}; '
            f'secret "{self.tsig_secret}"; }};\n'
        )
        zones: list[str] = []
        for zone in self.zones:
            (d / f"{zone}.db").write_text(self._zone_file(zone))
            updates = f'allow-update {{ key "{self.tsig_name}"; }};'
            if self.update_policy:
                rule = self.update_policy.format(key=self.tsig_name, zone=zone)
                updates = f"update-policy {{ {rule} }};"
            zones.append(
                f'zone "{zone}" {{ type primary; file "{d}/{zone}.db"; {updates} '
                f"also-notify {{ {self._notify_list()} }}; "
                f"allow-transfer {{ {self._transfer_list()} }}; }};"
            )
        primary, secondary = self.addresses
        conf = named_conf(d, primary, self._options(self.primary), zones, key)
        self.named = {
            "primary": Named("primary", d, primary, self.zones, conf, self.base),
            "secondary": bind_secondary(
                self.base / "secondary",
                self.zones,
                primary,
                secondary,
                options=self._options(self.secondary),
                preamble=key,
                binary_dir=self.base,
            ),
        }

    def _options(self, addr: str) -> list[str]:
        """The option lines both servers share, `options` last."""
        return [
            "check-names primary ignore;",  # underscored NS hosts: see bind_secondary
            "notify yes;",
            "notify-delay 0;",
            "ixfr-from-differences yes;",
            f"notify-source {addr};",
            *self.options,
        ]

    def _notify_list(self) -> str:
        targets = [(self.secondary, self.secondary_port), *self.extra_secondaries]
        return " ".join(f"{ip} port {port};" for ip, port in targets)

    def _transfer_list(self) -> str:
        ips = dict.fromkeys([self.secondary, *(ip for ip, _ in self.extra_secondaries)])
        return " ".join(f"{ip};" for ip in ips)

    def _zone_file(self, zone: str) -> str:
        ns = "".join(f"@ IN NS {n}.\n" for n in self.ns_names) or (
            f"@ IN NS ns1.{zone}.\n@ IN NS ns2.{zone}.\n"
            f"ns1 IN A {self.primary}\nns2 IN A {self.secondary}\n"
        )
        extra = "".join(line + "\n" for line in self.extra_records.get(zone, []))
        return f"$TTL 60\n@ IN SOA ns1.{zone}. hostmaster.{zone}. ( 1 2 1 600 2 )\n{ns}{extra}"

    # --- processes ----------------------------------------------------------------------

    def start(self) -> BindPair:
        self._write()
        try:
            self._start("primary")
            self._start("secondary")
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, role: str) -> None:
        self.started_in[role] = self.named[role].start(self.start_timeout)

    def tail(self, role: str, n: int = 8) -> str:
        return self.named[role].tail(n)

    def _stop(self, role: str) -> None:
        if role in self.named:
            self.named[role].stop()

    def stop(self) -> None:
        for role in ("secondary", "primary"):
            self._stop(role)

    def stop_primary(self) -> None:
        self._stop("primary")

    def stop_secondary(self) -> None:
        self._stop("secondary")

    def start_secondary(self) -> None:
        self._start("secondary")

    def __enter__(self) -> BindPair:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- queries --------------------------------------------------------------------------

    def server(self, which: str) -> tuple[str, int]:
        """(ip, port) of "primary" or "secondary"."""
        return self.addresses[0 if which == "primary" else 1]

    def serial(self, which: str, zone: str) -> int | None:
        return soa_serial(self.server(which), zone)

    def txt(self, which: str, name: str) -> list[str]:
        addr, port = self.server(which)
        q = dns.message.make_query(name, dns.rdatatype.TXT)
        q.flags &= ~dns.flags.RD
        r = dns.query.udp(q, addr, port=port, timeout=1.0)
        if r.flags & dns.flags.TC:
            r = dns.query.tcp(q, addr, port=port, timeout=1.0)
        return [
            b"".join(rd.strings).decode()
            for rrset in r.answer
            if rrset.rdtype == dns.rdatatype.TXT
            for rd in rrset
        ]

    def wait_for_txt(
        self, which: str, name: str, predicate: Callable[[list[str]], bool], timeout: float = 10.0
    ) -> list[str]:
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while time.monotonic() < deadline:
            try:
                seen = self.txt(which, name)
            except (OSError, dns.exception.DNSException):
                seen = []
            if predicate(seen):
                return seen
            time.sleep(0.1)
        raise AssertionError(f"{which} {name}: still {seen} after {timeout}s")
