"""Drive rotator as an operator would: a config beside a real BIND pair, CLI commands and the
daemon as subprocesses, and direct queries to each nameserver."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dkim
import dns.flags
import dns.message
import dns.query
import dns.rdatatype
from cryptography.hazmat.primitives import serialization

from rotator.adapters.store.postgres.store import PostgresEventStore
from rotator.adapters.store.sqlite import SqliteEventStore
from rotator.demo import write_config
from rotator.domain.model import KeyState
from rotator.ports import EventStore

ROOT = str(Path(__file__).resolve().parents[2])
# The subprocesses import this checkout's rotator even when it is not installed.
SUBPROCESS_ENV = {**os.environ, "PYTHONPATH": ROOT, "ROTATOR_CONFIG": ""}

MESSAGE = (
    b"From: Alice <alice@example.test>\r\nTo: bob@example.org\r\n"
    b"Subject: rotation test\r\nMessage-ID: <1@example.test>\r\n"
    b"Date: Tue, 24 Nov 2026 12:00:00 +0000\r\n\r\nHello, in-flight mail.\r\n"
)


def query_txt(
    server: str, port: int, name: str, timeout: float = 2.0
) -> tuple[str, bool, list[str]]:
    """(rcode, AA flag, TXT texts) straight from one server, recursion not desired."""
    q = dns.message.make_query(name, dns.rdatatype.TXT)
    q.flags &= ~dns.flags.RD
    r = dns.query.udp(q, server, port=port, timeout=timeout)
    if r.flags & dns.flags.TC:
        r = dns.query.tcp(q, server, port=port, timeout=timeout)
    texts = [
        b"".join(rd.strings).decode()
        for rrset in r.answer
        if rrset.rdtype == dns.rdatatype.TXT
        for rd in rrset
    ]
    return dns.rcode.to_text(r.rcode()), bool(r.flags & dns.flags.AA), texts


def dkim_dnsfunc(server: str, port: int) -> Callable[..., bytes | None]:
    """dkimpy's DNS lookup, pointed at one of the test nameservers."""

    def lookup(name: bytes | str, timeout: float = 5) -> bytes | None:
        qname = name.decode() if isinstance(name, bytes) else name
        _, _, texts = query_txt(server, port, qname, timeout=timeout)
        return texts[0].encode() if texts else None

    return lookup


def sign(key_path: Path, domain: str, selector: str, algorithm: str = "rsa") -> bytes:
    pem = key_path.read_bytes()
    if algorithm == "ed25519":
        # dkimpy takes an ed25519 private key as the base64 of its 32 raw bytes
        raw = serialization.load_pem_private_key(pem, password=None).private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        pem = base64.b64encode(raw)
    sig = dkim.sign(
        MESSAGE,
        selector.encode(),
        domain.encode(),
        pem,
        include_headers=[b"from", b"to", b"subject", b"message-id", b"date"],
        signature_algorithm=b"ed25519-sha256" if algorithm == "ed25519" else b"rsa-sha256",
    )
    return bytes(sig) + MESSAGE


def verifies(signed: bytes, server: str, port: int) -> bool:
    return bool(dkim.verify(signed, dnsfunc=dkim_dnsfunc(server, port)))


class RotatorEnv:
    def __init__(
        self, workdir: Path, bind: Any, policy_dir: Path, config: Path | None = None
    ) -> None:
        """`bind`: anything with server("primary" | "secondary"); `config`: a config
        written already (else one for a BIND pair)."""
        self.workdir = workdir
        self.bind = bind
        self.config = config or write_config(workdir, bind, policy_dir)
        self.daemon: subprocess.Popen[bytes] | None = None
        self.daemon_log = workdir / "daemon.log"
        self.database: str | None = None  # a PostgreSQL URL, once the config names one

    def use_database(self, url: str) -> None:
        """The config names this PostgreSQL database from now on (its files stay here)."""
        text = self.config.read_text()
        line = next(ln for ln in text.splitlines() if ln.startswith("database ="))
        self.config.write_text(text.replace(line, f'database = "{url}"'))
        self.database = url

    # --- CLI ------------------------------------------------------------------------

    def cli(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "rotator.cli", "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**SUBPROCESS_ENV, **(env or {})},
            cwd=self.workdir,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"rotator {' '.join(args)} failed: {proc.stdout}{proc.stderr}")
        return proc

    # --- daemon ---------------------------------------------------------------------

    def start(self, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.daemon_log, "ab")  # noqa: SIM115 - closed with the process
        self.daemon = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rotator.cli",
                "--config",
                str(self.config),
                "--log-format",
                "json",
                "run",
            ],
            stdout=log,
            stderr=log,
            cwd=self.workdir,
            env={**SUBPROCESS_ENV, **(env or {})},
        )
        log.close()
        return self.daemon

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        proc, self.daemon = self.daemon, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
            raise AssertionError(f"daemon did not stop within {timeout}s") from None

    def close(self) -> None:
        if self.daemon is not None:
            self.stop(signal.SIGKILL)

    # --- state ----------------------------------------------------------------------

    def store(self) -> EventStore:
        """A connection to the config's database (closed by the caller)."""
        if self.database is not None:
            return PostgresEventStore(self.database)
        return SqliteEventStore(self.workdir / "rotator.db")

    def list_keys(self, domain: str | None = None) -> list[KeyState]:
        store = self.store()
        try:
            return [k for k in store.list_keys() if domain is None or k.domain == domain]
        finally:
            store.close()

    def wait_for(self, what: str, predicate: Callable[[], Any], timeout: float = 40.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            if self.daemon is not None and self.daemon.poll() is not None:
                raise AssertionError(
                    f"daemon exited ({self.daemon.returncode}) while waiting "
                    f"for {what}:\n{self.tail()}"
                )
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}:\n{self.tail()}")

    def key_in_state(
        self, domain: str, state: str, exclude: frozenset[str] | set[str] = frozenset()
    ) -> KeyState | None:
        for k in self.list_keys(domain):
            if k.state.value == state and k.key_id not in exclude:
                return k
        return None

    def tail(self, n: int = 25) -> str:
        try:
            return "\n".join(self.daemon_log.read_text().splitlines()[-n:])
        except FileNotFoundError:
            return "(no daemon log)"

    def answers(self, name: str) -> dict[str, tuple[str, bool, list[str]]]:
        """What the primary and the secondary each answer, queried directly."""
        out = {}
        for which in ("primary", "secondary"):
            ip, port = self.bind.server(which)
            out[which] = query_txt(ip, port, name)
        return out

    def verifies(self, signed: bytes) -> bool:
        """dkimpy verification with its DNS lookup pointed at the secondary."""
        ip, port = self.bind.server("secondary")
        return verifies(signed, ip, port)
