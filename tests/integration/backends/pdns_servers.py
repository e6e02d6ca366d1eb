"""kind = "powerdns" (and "lexicon" over lexicon's PowerDNS provider): a real PowerDNS
Authoritative (pdns_server, gsqlite3 backend) as the primary, its zone created through
the API, and a BIND secondary fed by its NOTIFY and AXFR."""

from __future__ import annotations

import contextlib
import http.client
import json
import secrets
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rdatatype

from rotator.demo.localdns import PRIMARY, SECONDARY, ensure_loopback_alias, free_port
from rotator.demo.named import bind_secondary
from rotator.demo.processes import stop_process, track
from rotator.domain.errors import RotatorError

ZONE = "dkim.pdns.test"
UNSERVED = "elsewhere.pdns.test"
SCHEMAS = (
    Path("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql"),
    Path("/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql"),
)


def pdns_binary() -> str:
    found = shutil.which("pdns_server") or "/usr/sbin/pdns_server"
    if not Path(found).exists():
        raise RotatorError(
            "PowerDNS is not installed: apt-get install pdns-server pdns-backend-sqlite3"
        )
    return found


class PdnsServers:
    kind = "powerdns"
    zone = ZONE
    unserved_zone = UNSERVED

    def __init__(self, base: Path) -> None:
        self.base = Path(base)
        (self.base / "pdns").mkdir(parents=True, exist_ok=True)
        if ensure_loopback_alias(SECONDARY):  # NS ns2 -> 127.0.0.2, on the same port
            self.port = free_port((PRIMARY, SECONDARY))
            secondary = (SECONDARY, self.port)
        else:
            self.port = free_port((PRIMARY,))
            secondary = (PRIMARY, free_port((PRIMARY,), avoid=self.port))
        self.web_port = free_port((PRIMARY,), avoid=self.port)
        self.url = f"http://{PRIMARY}:{self.web_port}"
        self.api_key = secrets.token_urlsafe(24)
        self.proc: subprocess.Popen[bytes] | None = None
        self.secondary = bind_secondary(
            self.base / "secondary", [ZONE], (PRIMARY, self.port), secondary
        )
        try:
            self._start_pdns()
            self._create_zone()
            self.secondary.start()
        except BaseException:
            self.stop()
            raise

    # --- the BackendServers protocol ------------------------------------------------------

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [(PRIMARY, self.port), self.secondary.address]

    def server(self, which: str) -> tuple[str, int]:
        return self.addresses[0 if which == "primary" else 1]

    def backend_table(self, workdir: Path, wrong_credential: bool = False) -> str:
        key = self._key_file(workdir, wrong_credential)
        return (
            f'[[dns.backends]]\nname = "pdns"\nkind = "powerdns"\n'
            f'zones = ["{ZONE}", "{UNSERVED}"]\nurl = "{self.url}"\n'
            f'api_key_file = "{key}"\nnameservers = [{self._nameservers()}]\ntimeout = 3\n'
        )

    def stop(self) -> None:
        self.secondary.stop()
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc)

    # --- helpers ------------------------------------------------------------------------

    def _key_file(self, workdir: Path, wrong: bool) -> Path:
        workdir.mkdir(parents=True, exist_ok=True)
        key = workdir / "pdns.key"
        key.write_text(("not-the-key" if wrong else self.api_key) + "\n")
        key.chmod(0o600)
        return key

    def _nameservers(self) -> str:
        return ", ".join(f'"{ip}:{port}"' for ip, port in self.addresses)

    def api(self, method: str, path: str, doc: Any = None) -> tuple[int, Any]:
        """One request to the API (status, JSON answer or None)."""
        conn = http.client.HTTPConnection(PRIMARY, self.web_port, timeout=5)
        try:
            body = json.dumps(doc).encode() if doc is not None else None
            conn.request(
                method,
                f"/api/v1/servers/localhost{path}",
                body=body,
                headers={"X-API-Key": self.api_key, "Content-Type": "application/json"},
            )
            answer = conn.getresponse()
            data = answer.read()
        finally:
            conn.close()
        try:
            return answer.status, json.loads(data) if data else None
        except ValueError:
            return answer.status, data.decode(errors="replace")

    def _start_pdns(self, timeout: float = 20.0) -> None:
        d = self.base / "pdns"
        schema = next((p for p in SCHEMAS if p.exists()), None)
        if schema is None:
            raise RotatorError("pdns-backend-sqlite3's schema is missing: apt-get install it")
        db = sqlite3.connect(d / "pdns.sqlite3")
        try:
            db.executescript(schema.read_text())
            db.commit()
        finally:
            db.close()
        (d / "pdns.conf").write_text("")  # --config-dir: nothing of /etc/powerdns is read
        ip, port = self.secondary.address
        cmd = [
            pdns_binary(),
            f"--config-dir={d}",
            f"--socket-dir={d}",
            "--guardian=no",
            "--daemon=no",
            "--write-pid=no",
            "--disable-syslog=yes",
            "--launch=gsqlite3",
            f"--gsqlite3-database={d / 'pdns.sqlite3'}",
            f"--local-address={PRIMARY}",
            f"--local-port={self.port}",
            f"--query-local-address={PRIMARY}",
            "--api=yes",
            f"--api-key={self.api_key}",
            "--webserver=yes",
            f"--webserver-address={PRIMARY}",
            f"--webserver-port={self.web_port}",
            "--webserver-allow-from=127.0.0.0/8",
            "--primary=yes",
            f"--also-notify={ip}:{port}",
            "--only-notify=",  # not the NS hosts on port 53: only the secondary above
            "--allow-axfr-ips=127.0.0.0/8",
            "--security-poll-suffix=",  # no status lookup outside
            "--distributor-threads=1",
            "--receiver-threads=1",
        ]
        out = open(d / "stderr.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        out.close()
        track(self.proc)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RotatorError(f"pdns_server exited {self.proc.returncode}: {self.tail()}")
            with contextlib.suppress(OSError):
                if self.api("GET", "")[0] == 200:
                    return
            if time.monotonic() > deadline:
                raise RotatorError(f"pdns_server's API did not answer in {timeout:g}s")
            time.sleep(0.05)

    def _create_zone(self) -> None:
        z = ZONE + "."
        second = self.secondary.address[0]

        def rrset(name: str, rtype: str, *contents: str) -> dict[str, Any]:
            records = [{"content": c, "disabled": False} for c in contents]
            return {"name": name, "type": rtype, "ttl": 60, "records": records}

        status, answer = self.api(
            "POST",
            "/zones",
            {
                "name": z,
                "kind": "Master",
                "soa_edit_api": "DEFAULT",  # every API change raises the serial
                "rrsets": [
                    # refresh an hour: the secondary keeps up only if NOTIFY reaches it
                    rrset(z, "SOA", f"ns1.{z} hostmaster.{z} 1 3600 600 86400 2"),
                    rrset(z, "NS", f"ns1.{z}", f"ns2.{z}"),
                    rrset(f"ns1.{z}", "A", PRIMARY),
                    rrset(f"ns2.{z}", "A", second),
                ],
            },
        )
        if status != 201:
            raise RotatorError(f"PowerDNS did not create {ZONE}: HTTP {status} {answer}")

    def serial(self, which: str) -> int | None:
        ip, port = self.server(which)
        q = dns.message.make_query(ZONE, dns.rdatatype.SOA)
        q.flags &= ~dns.flags.RD
        r = dns.query.udp(q, ip, port=port, timeout=2)
        soa = [rrset for rrset in r.answer if rrset.rdtype == dns.rdatatype.SOA]
        return int(soa[0][0].serial) if soa else None

    def tail(self, n: int = 8) -> str:
        with contextlib.suppress(FileNotFoundError):
            lines = (self.base / "pdns" / "stderr.log").read_text(errors="replace").splitlines()
            return " | ".join(lines[-n:])
        return ""


class LexiconPdnsServers(PdnsServers):
    """The same servers, reached through lexicon's PowerDNS provider."""

    kind = "lexicon"

    def backend_table(self, workdir: Path, wrong_credential: bool = False) -> str:
        workdir.mkdir(parents=True, exist_ok=True)
        options = workdir / "lexicon-pdns.toml"
        key = "not-the-key" if wrong_credential else self.api_key
        options.write_text(f'auth_token = "{key}"\npdns_server = "{self.url}"\n')
        options.chmod(0o600)
        return (
            f'[[dns.backends]]\nname = "pdns-lexicon"\nkind = "lexicon"\nprovider = "powerdns"\n'
            f'zones = ["{ZONE}", "{UNSERVED}"]\ncredentials_file = "{options}"\n'
            f"nameservers = [{self._nameservers()}]\ntimeout = 3\n"
        )


def start_pdns(base: Path) -> PdnsServers:
    return PdnsServers(base)


def start_lexicon_pdns(base: Path) -> PdnsServers:
    return LexiconPdnsServers(base)
