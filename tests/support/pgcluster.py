"""A PostgreSQL 15 server of the tests' own: initdb and pg_ctl (Debian's binaries) in a temp
directory, reachable only through a unix socket in it (listen_addresses = '': no TCP port to
collide with anything), one per session, stopped by its pid at the end; a fresh database
per test. initdb refuses to run as root: as root, the cluster runs as `nobody` in a
directory that user owns.

    from tests.support.pgcluster import pgcluster, pgcluster_url  # the fixtures
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

BIN = Path(os.environ.get("ROTATOR_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "postgres"
PORT = 5432  # names the socket file only


class PgCluster:
    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="rotator-pgcluster-"))
        self.data = self.base / "data"
        self.user = "nobody" if os.geteuid() == 0 else None
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        os.chmod(self.base, 0o755)  # the socket, for whoever runs the tests
        self.pid: int | None = None

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        as_user = ["runuser", "-u", self.user, "--"] if self.user is not None else []
        return subprocess.run(
            [*as_user, *argv],
            cwd=self.base,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def start(self) -> PgCluster:
        init = self._run(
            str(BIN / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
            "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions",
        )  # fmt: skip
        if init.returncode != 0:
            raise RuntimeError(f"initdb: {init.stdout}{init.stderr}")
        # the tests need no crash safety from it: fsync off
        options = f"-c listen_addresses='' -k {self.base} -p {PORT} -c fsync=off"
        log = self.base / "server.log"
        started = self._run(
            str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(log), "-w", "-t", "60",
            "-o", options, "start",
        )  # fmt: skip
        if started.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"pg_ctl start: {started.stdout}{started.stderr}{tail}")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        return self

    def conninfo(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.base}&port={PORT}"

    def create_database(self) -> str:
        import psycopg

        name = f"k_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return name

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        if self.pid is not None:
            done = self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")
            if done.returncode != 0:  # the postmaster we started, by its pid
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGQUIT)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and _alive(self.pid):
                    time.sleep(0.1)
            self.pid = None
        shutil.rmtree(self.base, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def available() -> bool:
    return (BIN / "initdb").is_file() and (BIN / "pg_ctl").is_file()


@pytest.fixture(scope="session")
def pgcluster() -> Iterator[PgCluster]:
    if not available():
        pytest.skip(f"no PostgreSQL 15 in {BIN}: apt-get install postgresql-15")
    pytest.importorskip("psycopg")
    cluster = PgCluster()
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def pgcluster_url(pgcluster: PgCluster) -> Iterator[str]:
    """A database of this test's own on the session's server, dropped after it."""
    name = pgcluster.create_database()
    try:
        yield pgcluster.conninfo(name)
    finally:
        pgcluster.drop_database(name)
