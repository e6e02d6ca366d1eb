"""Real DKIM signers for tests: OpenDKIM (milter) and rspamd (HTTP), on loopback high ports.

Each daemon runs as its own Debian user (opendkim, _rspamd) and is stopped by the pid this
harness started, with bounded waits. Both need root (to switch user and, for OpenDKIM, to give
it a private /dev/log) and the Debian binary; `opendkim_skip_reason()` and
`rspamd_skip_reason()` say why a test cannot run.

Where the files go (OpenDKIM checks this; rspamd does not):
  OpenDKIM refuses any key file whose directory chain has a world-writable directory (/tmp,
  /var/tmp, pytest's tmp_path) or a writable one owned by anyone but root/opendkim. Put
  everything below `private_root()`: a fresh 0755 root:root directory under /run, whose chain
  (/, /run) is root-owned and not world-writable. Remove it with `remove_private_root()`.

What OpenDKIM reads, and as whom:
  opendkim.conf, KeyTable, SigningTable: as root at start, as `opendkim` on reload (SIGUSR1),
  so all three must be readable by opendkim (e.g. 0644 root:root, or 0640 root:opendkim when
  the KeyTable holds keys inline). Key files named in the KeyTable: as `opendkim` when a
  message is signed, with its safe-key checks (0600 opendkim:opendkim or 0640 root:opendkim).

Logs: OpenDKIM logs only through syslog(3), i.e. /dev/log, which does not exist here. The
harness starts it in a private mount namespace (`unshare --mount`) whose /dev is a small
tmpfs with null/zero/random/urandom and a /dev/log symlink to a datagram socket this process
reads; `OpenDkim.log_lines()` returns what it logged. rspamd logs to the console; its output is
kept in `Rspamd.log_path`.
"""

from __future__ import annotations

import base64
import contextlib
import grp
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from rotator.adapters.signers.probing.milter import (
    MilterResult,
    milter_ping,
    milter_sign,
    signed_message,
)
from rotator.adapters.signers.probing.rspamd import rspamd_sign
from rotator.domain.errors import SignerError

OPENDKIM_BIN = "/usr/sbin/opendkim"
RSPAMD_BIN = "/usr/bin/rspamd"
RSPAMD_MAIN_CONF = "/etc/rspamd/rspamd.conf"
UNSHARE_BIN = "/usr/bin/unshare"
# A loopback port nobody listens on: rspamd's DNS queries fail at once, nothing leaves the host.
DEAD_NAMESERVER = "127.0.0.1:1"

__all__ = [
    "OpenDkim",
    "Rspamd",
    "SyslogSink",
    "free_port",
    "install_file",
    "make_dir",
    "opendkim_skip_reason",
    "private_root",
    "remove_private_root",
    "rspamd_skip_reason",
    "running",
    "unsafe_dirs",
]


# ---------------------------------------------------------------- environment checks


def dkim_record(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    """The DKIM TXT record of a key, built here rather than by rotator's own code: the
    tests' independent view of what a receiver reads."""
    if isinstance(key, rsa.RSAPrivateKey):
        spki = key.public_key().public_bytes(
            ser.Encoding.DER, ser.PublicFormat.SubjectPublicKeyInfo
        )
        return b"v=DKIM1; k=rsa; p=" + base64.b64encode(spki)
    raw = key.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    return b"v=DKIM1; k=ed25519; p=" + base64.b64encode(raw)


def _skip_reason(binary: str, user: str) -> str | None:
    if not os.path.exists(binary):
        return f"{binary} is not installed"
    if os.geteuid() != 0:
        return f"{binary} must be started as root so it can switch to {user}"
    try:
        pwd.getpwnam(user)
    except KeyError:
        return f"Debian user {user} does not exist"
    return None


def opendkim_skip_reason() -> str | None:
    """None when OpenDKIM can run here, else why not (for pytest.skip)."""
    return _skip_reason(OPENDKIM_BIN, "opendkim")


def rspamd_skip_reason() -> str | None:
    """None when rspamd can run here, else why not (for pytest.skip)."""
    return _skip_reason(RSPAMD_BIN, "_rspamd")


_unshare_ok: bool | None = None


def _can_unshare() -> bool:
    # Needs CAP_SYS_ADMIN; without it OpenDKIM still runs, only its logs are lost.
    global _unshare_ok
    if _unshare_ok is None:
        try:
            done = subprocess.run(
                [UNSHARE_BIN, "--mount", "true"], capture_output=True, timeout=10, check=False
            )
            _unshare_ok = done.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            _unshare_ok = False
    return _unshare_ok


# ---------------------------------------------------------------- files and directories


def unsafe_dirs(path: Path) -> list[str]:
    """Why OpenDKIM's safe-key check would reject files below `path` (empty list: fine).

    Mirrors its rule: no directory from / down is world-writable, and a group- or
    owner-writable one belongs to root (or opendkim).
    """
    allowed = {0}
    with contextlib.suppress(KeyError):
        allowed.add(pwd.getpwnam("opendkim").pw_uid)
    problems = []
    current = Path(os.path.abspath(path))
    for directory in [*reversed(current.parents), current]:
        try:
            st = directory.stat()
        except FileNotFoundError:
            break
        if st.st_mode & 0o002:
            problems.append(f"{directory} is world-writable")
        elif st.st_uid not in allowed:
            problems.append(f"{directory} is owned by uid {st.st_uid}, not root or opendkim")
        elif st.st_mode & 0o020 and st.st_gid != 0:
            problems.append(f"{directory} is group-writable by gid {st.st_gid}")
    return problems


def private_root(prefix: str = "rotator-signers-") -> Path:
    """A fresh 0755 root-owned directory under /run that OpenDKIM accepts as a key location."""
    parent = Path("/run")
    problems = unsafe_dirs(parent)
    if problems:
        raise RuntimeError("no safe place for signer files: " + "; ".join(problems))
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(root, 0o755)
    return root


def remove_private_root(root: Path) -> None:
    if root.parent == Path("/run") and root.name.startswith("rotator-signers-"):
        shutil.rmtree(root, ignore_errors=True)
    else:
        raise ValueError(f"refusing to remove {root}: not made by private_root()")


def install_file(
    path: Path,
    data: bytes | str,
    *,
    mode: int = 0o644,
    owner: str | int = "root",
    group: str | int = "root",
) -> None:
    """Write `path` atomically (temp file in the same directory, fsync, rename) with ownership.

    Readers see the old file or the new one, never a half-written one; this is how rotator
    itself rewrites signer tables.
    """
    uid = owner if isinstance(owner, int) else pwd.getpwnam(owner).pw_uid
    gid = group if isinstance(group, int) else grp.getgrnam(group).gr_gid
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        os.write(fd, payload)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def make_dir(path: Path, *, mode: int = 0o755, owner: str = "root", group: str = "root") -> Path:
    path.mkdir(parents=False, exist_ok=True)
    os.chown(path, pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid)
    os.chmod(path, mode)
    return path


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the daemon binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(text.strip().splitlines()[-lines:])


def _stop_pid(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    """Signal our own child by pid, wait at most `timeout`, then SIGKILL it."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


# ---------------------------------------------------------------- syslog sink


_SYSLOG_LINE = re.compile(
    rb"^<\d+>(?:\w{3} [ \d]\d \d\d:\d\d:\d\d )?(?P<tag>[^:\[]*)(?:\[\d+\])?: "
)


class SyslogSink:
    """A datagram socket standing in for /dev/log: collects syslog(3) messages in memory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        # The daemon writes after dropping to its own user.
        os.chmod(path, 0o666)
        self._sock.settimeout(0.2)
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"syslog:{path}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            match = _SYSLOG_LINE.match(data)
            text = data[match.end() :] if match else data
            with self._lock:
                self._lines.append(text.decode("utf-8", "replace").rstrip("\n\0"))

    def lines(self) -> list[str]:
        with self._lock:
            return list(self._lines)

    def wait_for(self, pattern: str, *, start: int = 0, timeout: float = 5.0) -> str | None:
        """The first line from index `start` on matching `pattern` (regex), or None."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            for line in self.lines()[start:]:
                if rx.search(line):
                    return line
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2)
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


# ---------------------------------------------------------------- OpenDKIM


class OpenDkim:
    """One OpenDKIM milter on 127.0.0.1:<port>, running as `opendkim`, one algorithm.

    Files: `<base_dir>/<name>/` (0755 root) holds opendkim.conf, the pid file, stderr and the
    syslog socket. The KeyTable and SigningTable (refile:) are the caller's; they and the keys
    they name must be somewhere `unsafe_dirs()` accepts (see the module docstring).
    """

    ALGORITHMS: ClassVar[dict[str, str]] = {"rsa": "rsa-sha256", "ed25519": "ed25519-sha256"}

    def __init__(
        self,
        base_dir: Path,
        key_table: Path,
        signing_table: Path,
        *,
        algorithm: str = "rsa",
        name: str = "opendkim",
        port: int | None = None,
        require_safe_keys: bool = True,
        extra_conf: Sequence[str] = (),
    ) -> None:
        if algorithm not in self.ALGORITHMS:
            raise ValueError(f"algorithm must be one of {sorted(self.ALGORITHMS)}")
        self.base_dir = Path(base_dir)
        self.key_table = Path(key_table)
        self.signing_table = Path(signing_table)
        self.algorithm = algorithm
        self.port = port or free_port()
        self.dir = self.base_dir / name
        self.conf_path = self.dir / "opendkim.conf"
        self.pid_path = self.dir / "opendkim.pid"
        self.stderr_path = self.dir / "stderr.log"
        self.log_socket = self.dir / "syslog.sock"
        self.require_safe_keys = require_safe_keys
        self.extra_conf = list(extra_conf)
        self.proc: subprocess.Popen[bytes] | None = None
        self.sink: SyslogSink | None = None
        self.start_seconds = 0.0

    @property
    def address(self) -> str:
        return f"inet:{self.port}@127.0.0.1"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("opendkim is not running")
        return self.proc.pid

    def config_text(self) -> str:
        lines = [
            "# Written by tests/support/signers.py",
            "Syslog yes",
            "SyslogSuccess yes",
            "LogWhy yes",
            "UserID opendkim",
            f"Socket inet:{self.port}@127.0.0.1",
            f"PidFile {self.pid_path}",
            "Mode s",
            "InternalHosts 127.0.0.1",
            "Canonicalization relaxed/relaxed",
            f"SignatureAlgorithm {self.ALGORITHMS[self.algorithm]}",
            f"KeyTable refile:{self.key_table}",
            f"SigningTable refile:{self.signing_table}",
            "MultipleSignatures yes",
            f"RequireSafeKeys {'yes' if self.require_safe_keys else 'no'}",
            # Keep the header additions to the signature alone.
            "SoftwareHeader no",
            *self.extra_conf,
        ]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 30.0) -> Self:
        reason = opendkim_skip_reason()
        if reason:
            raise RuntimeError(reason)
        problems = unsafe_dirs(self.dir.parent)
        if problems:
            raise RuntimeError("OpenDKIM would refuse keys here: " + "; ".join(problems))
        make_dir(self.dir)
        install_file(self.conf_path, self.config_text(), mode=0o644)
        cmd = [OPENDKIM_BIN, "-f", "-x", str(self.conf_path)]
        if _can_unshare():
            self.sink = SyslogSink(self.log_socket)
            # `exec` keeps one pid from unshare to opendkim, so our Popen pid is opendkim's.
            script = (
                "set -e; mount -t tmpfs -o mode=0755,size=64k tmpfs /dev; "
                "mknod -m 666 /dev/null c 1 3; mknod -m 666 /dev/zero c 1 5; "
                "mknod -m 666 /dev/random c 1 8; mknod -m 666 /dev/urandom c 1 9; "
                f'ln -s "{self.log_socket}" /dev/log; exec "$@"'
            )
            cmd = [UNSHARE_BIN, "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
            cmd += [OPENDKIM_BIN, "-f", "-x", str(self.conf_path)]
        began = time.monotonic()
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT
            )
        deadline = began + timeout
        while not _port_open(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                why = (
                    "exited" if self.proc.poll() is not None else f"not listening after {timeout}s"
                )
                detail = _tail(self.stderr_path) + " | " + " | ".join(self.log_lines()[-10:])
                self.stop()
                raise RuntimeError(f"opendkim {why}: {detail}")
            time.sleep(0.05)
        self.start_seconds = time.monotonic() - began
        return self

    @property
    def has_logs(self) -> bool:
        """False where no private /dev/log could be set up (no CAP_SYS_ADMIN)."""
        return self.sink is not None

    def log_lines(self) -> list[str]:
        return self.sink.lines() if self.sink else []

    def milter(
        self, message: bytes, sender: str, recipients: Sequence[str] = ("rcpt@example.net",)
    ) -> MilterResult:
        return milter_sign(self.address, message, sender=sender, recipients=recipients)

    def sign(
        self, message: bytes, sender: str, recipients: Sequence[str] = ("rcpt@example.net",)
    ) -> bytes:
        """The message as OpenDKIM would pass it on: its added headers on top."""
        return signed_message(message, self.milter(message, sender, recipients))

    def reload(self, timeout: float = 10.0) -> list[str]:
        """SIGUSR1, then one milter handshake (OpenDKIM reloads lazily, on the next
        connection); returns what it logged meanwhile ("configuration reloaded from ..." or
        the error that kept the old configuration)."""
        mark = len(self.log_lines())
        os.kill(self.pid, signal.SIGUSR1)
        # The signal is taken by a separate thread; give it a moment before connecting.
        time.sleep(0.2)
        with contextlib.suppress(SignerError):
            milter_ping(self.address, timeout=timeout)
        if self.sink:
            # One line either way: "configuration reloaded from ..." or why it kept the old one.
            self.sink.wait_for(r".", start=mark, timeout=timeout)
        return self.log_lines()[mark:]

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            # libmilter notices the stop flag only when its accept poll (5 s) wakes up; a
            # connection wakes it at once.
            _port_open(self.port)
            _stop_pid(self.proc, signal.SIGTERM, timeout)
        if self.sink is not None:
            self.sink.close()

    def __enter__(self) -> Self:
        return self.start() if self.proc is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# ---------------------------------------------------------------- rspamd


class Rspamd:
    """A private rspamd (main process root, workers `_rspamd`) with its normal worker on
    127.0.0.1:<port>, using the packaged /etc/rspamd/rspamd.conf with our own LOCAL_CONFDIR,
    RUNDIR, DBDIR and LOGDIR under `<base_dir>/<name>/`.

    dkim_signing: local.d/dkim_signing.conf sets the probe switches (sign_local,
    allow_username_mismatch, use_esld = false) and `.include`s the caller's file, which holds
    what rotator generates (`domain { example.com { selectors [ ... ] } }`).
    """

    def __init__(
        self,
        base_dir: Path,
        dkim_signing_conf: Path,
        *,
        name: str = "rspamd",
        port: int | None = None,
        controller_port: int | None = None,
        options: Sequence[str] = (),
        small_tld_list: bool = True,
    ) -> None:
        self.base_dir = Path(base_dir)
        self.options = list(options)
        self.small_tld_list = small_tld_list
        self.dkim_signing_conf = Path(dkim_signing_conf)
        self.dir = self.base_dir / name
        self.port = port or free_port()
        self.controller_port = controller_port or free_port()
        self.log_path = self.dir / "rspamd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_seconds = 0.0
        self.reload_seconds = 0.0
        self.seen_workers: set[int] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("rspamd is not running")
        return self.proc.pid

    def _write_config(self) -> None:
        conf = make_dir(self.dir / "conf")
        local = make_dir(conf / "local.d")
        override = make_dir(conf / "override.d")
        make_dir(self.dir / "run")
        make_dir(self.dir / "db", mode=0o750, owner="_rspamd", group="_rspamd")
        options = list(self.options)
        files: dict[Path, str] = {}
        if self.small_tld_list:
            # Building the URL matcher from the 9,600 public suffixes takes ~7 s of the ~8 s
            # start (and again on every reload); URL detection plays no part in signing.
            files[conf / "tld.dat"] = "com\nnet\norg\nexample\ntest\n"
            options.append(f'url_tld = "{conf / "tld.dat"}";')
        files |= {
            local / "worker-normal.inc": f'bind_socket = "127.0.0.1:{self.port}";\ncount = 1;\n',
            # override.d replaces the packaged localhost binds, so nothing lands on 1133x.
            override / "worker-controller.inc": (
                f'bind_socket = "127.0.0.1:{self.controller_port}";\ncount = 1;\n'
                'password = "";\nsecure_ip = "127.0.0.1";\n'
            ),
            override / "worker-proxy.inc": "enabled = false;\n",
            override / "worker-fuzzy.inc": "enabled = false;\ncount = -1;\n",
            local / "options.inc": (
                f'dns {{ nameserver = ["{DEAD_NAMESERVER}"]; timeout = 0.5s; retransmits = 1; }}\n'
                "map_watch_interval = 1h;\n" + "".join(f"{line}\n" for line in options)
            ),
            override / "logging.inc": 'type = "console";\nlevel = "info";\n',
            local / "dkim_signing.conf": (
                "sign_local = true;\nallow_username_mismatch = true;\nuse_esld = false;\n"
                f'.include "{self.dkim_signing_conf}"\n'
            ),
            # No remote fuzzy hash servers (redis has no servers by default).
            local / "fuzzy_check.conf": "enabled = false;\n",
        }
        for path, text in files.items():
            install_file(path, text, mode=0o644)

    def command(self) -> list[str]:
        return [
            RSPAMD_BIN,
            "-f",
            "-u",
            "_rspamd",
            "-g",
            "_rspamd",
            "-c",
            RSPAMD_MAIN_CONF,
            f"--var=LOCAL_CONFDIR={self.dir / 'conf'}",
            f"--var=RUNDIR={self.dir / 'run'}",
            f"--var=DBDIR={self.dir / 'db'}",
            f"--var=LOGDIR={self.dir / 'run'}",
        ]

    def start(self, timeout: float = 60.0) -> Self:
        reason = rspamd_skip_reason()
        if reason:
            raise RuntimeError(reason)
        make_dir(self.dir)
        self._write_config()
        began = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            self._wait_ready(began + timeout, set())
        except RuntimeError:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def _children(self) -> set[int]:
        kids = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.pid:
                    kids.add(int(stat.parent.name))
        return kids

    def _ping(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=2) as reply:
                return bool(reply.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def _wait_ready(self, deadline: float, old_workers: set[int], log_mark: int = -1) -> None:
        assert self.proc is not None
        while True:
            if log_mark >= 0:
                # A config rspamd cannot parse is logged and the old workers stay in service.
                for line in self.log_lines()[log_mark:]:
                    if "revert to old one" in line or "failed to load config" in line:
                        raise RuntimeError(f"rspamd kept its old configuration: {line}")
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"rspamd exited ({self.proc.returncode}): {_tail(self.log_path)}"
                )
            # After a reload the old workers must be gone, or a probe may still hit them.
            children = self._children()
            self.seen_workers |= children
            if not (children & old_workers) and self._ping():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"rspamd not ready in time: {_tail(self.log_path)}")
            time.sleep(0.1)

    def sign(self, message: bytes, sender: str, *, user: str = "probe") -> list[str]:
        return rspamd_sign(f"{self.url}/checkv2", message, sender=sender, user=user)

    def check(self, message: bytes, sender: str) -> dict[str, object]:
        """The whole checkv2 reply, for inspecting its shape."""
        request = urllib.request.Request(
            f"{self.url}/checkv2",
            data=message,
            headers={"IP": "127.0.0.1", "User": "probe", "From": sender},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            data: dict[str, object] = json.loads(reply.read())
            return data

    def reload(self, timeout: float = 60.0) -> float:
        """SIGHUP to the main pid; wait until the old workers are gone and the new ones answer.
        Returns the seconds it took. Raises RuntimeError when rspamd rejects the new
        configuration (it then keeps serving the old one)."""
        old = self._children()
        mark = len(self.log_lines())
        began = time.monotonic()
        os.kill(self.pid, signal.SIGHUP)
        self._wait_ready(began + timeout, old, mark)
        self.reload_seconds = time.monotonic() - began
        return self.reload_seconds

    def log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []

    def alive_workers(self) -> set[int]:
        """Workers this instance ever had that still exist as rspamd processes."""
        alive = set()
        for pid in self.seen_workers:
            with contextlib.suppress(OSError):
                # The name check guards against a reused pid; the pid is what selects.
                if Path(f"/proc/{pid}/comm").read_text().startswith("rspamd"):
                    alive.add(pid)
        return alive

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.seen_workers |= self._children()
            _stop_pid(self.proc, signal.SIGTERM, timeout)
            # Workers exit with the main process; wait a little, then kill stragglers by pid.
            deadline = time.monotonic() + 5
            while self.alive_workers() and time.monotonic() < deadline:
                time.sleep(0.05)
            for pid in self.alive_workers():
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> Self:
        return self.start() if self.proc is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def running(*signers: OpenDkim | Rspamd) -> Iterator[None]:
    """Start several signers; stop every one that started, whatever happens."""
    with contextlib.ExitStack() as stack:
        for signer in signers:
            stack.enter_context(signer)
        yield
