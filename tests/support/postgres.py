"""A private PostgreSQL 15 for the tests: a cluster made with Debian's binaries in a temp
directory, listening only on a unix socket there (no TCP port to collide with anything),
started once per session and stopped by its pid at the end; a fresh database per test.

initdb and postgres refuse to run as root: as root the cluster belongs to `nobody`, in a
directory that user owns (root reaches its socket all the same)."""

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

import psycopg
import pytest

BIN = Path(os.environ.get("ROTATOR_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "postgres"
PORT = 5432  # only names the socket file: nothing listens on TCP


def available() -> bool:
    return (BIN / "initdb").is_file() and (BIN / "pg_ctl").is_file()


class Cluster:
    """One postgres server of our own. `fsync`: off for the tests (nothing here has to
    survive a crash of the machine), on for benchmarks that compare with SQLite's FULL."""

    def __init__(self, fsync: bool = False) -> None:
        self.fsync = fsync
        self.base = Path(tempfile.mkdtemp(prefix="rotator-pg-"))
        self.data = self.base / "data"
        self.user: str | None = "nobody" if os.geteuid() == 0 else None
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        # reachable by whoever runs the test (root, or a daemon's own user)
        os.chmod(self.base, 0o755)
        self.pid: int | None = None

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", self.user, "--"] if self.user is not None else []
        return subprocess.run(
            [*prefix, *argv],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            stdin=subprocess.DEVNULL,
            cwd=self.base,
        )

    def start(self) -> Cluster:
        made = self._run(
            str(BIN / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
            "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions",
        )  # fmt: skip
        if made.returncode != 0:
            raise RuntimeError(f"initdb failed: {made.stdout}{made.stderr}")
        options = (
            f"-c listen_addresses='' -k {self.base} -p {PORT} "
            f"-c unix_socket_permissions=0777 -c fsync={'on' if self.fsync else 'off'} "
            "-c max_connections=200"
        )
        if not self.fsync:
            options += " -c synchronous_commit=off -c full_page_writes=off"
        self.options = options  # a start after a stop (restart) takes them again
        started = self._run(
            str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.base / "server.log"),
            "-w", "-t", "60", "-o", options, "start",
        )  # fmt: skip
        if started.returncode != 0:
            log = (self.base / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"pg_ctl start failed: {started.stdout}{started.stderr}{log}")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        return self

    def restart(self, down: float = 0.0) -> None:
        """Stop the server (fast: every session cut) and start it again `down` seconds
        later, as an operator's `pg_ctl restart` or a primary failing over; the same
        options, a new postmaster."""
        pg_ctl = (str(BIN / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60")
        log = ("-l", str(self.base / "server.log"))
        steps = (
            [("-m", "fast", "stop"), (*log, "-o", self.options, "start")]
            if down
            else [(*log, "-m", "fast", "restart")]
        )
        for i, step in enumerate(steps):
            if i:
                time.sleep(down)
            done = self._run(*pg_ctl, *step)
            if done.returncode != 0:
                raise RuntimeError(f"pg_ctl {step[-1]} failed: {done.stdout}{done.stderr}")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.base}&port={PORT}"

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        if self.pid is not None:
            stopped = self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")
            if stopped.returncode != 0:  # not ours to leave running: the postmaster by pid
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


@contextlib.contextmanager
def running(fsync: bool = False) -> Iterator[Cluster]:
    cluster = Cluster(fsync)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


# --- pytest fixtures (conftest modules import them) ---------------------------------------


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    if not available():
        pytest.skip(f"PostgreSQL 15 is not installed ({BIN}): apt-get install postgresql-15")
    with running() as cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres_cluster: Cluster) -> Iterator[str]:
    """A database of this test's own, dropped after it."""
    name = postgres_cluster.create_database()
    try:
        yield postgres_cluster.url(name)
    finally:
        postgres_cluster.drop_database(name)
