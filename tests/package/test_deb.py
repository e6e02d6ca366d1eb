"""The Debian package, end to end on this machine: `bash packaging/deb/build.sh` builds it,
lintian finds no error in it, `apt-get install ./dist/...deb` installs it, and then what
docs/deploy-package.md promises is checked: the command, the user, every path's owner and
mode, the units (systemd-analyze verify), OpenDKIM and rspamd starting on the empty tables,
`rotator init` as the rotator user on the installed example config, the OpenDKIM
installer's launcher behind a template socket. Then remove, purge (keys kept and named),
install again, purge with ROTATOR_PURGE_KEYS=yes, and nothing is left.

It needs root and a Debian 12 machine with no rotator installed. It takes a few minutes (the
build alone 1 to 2.5 minutes, more with a cold pip cache): ROTATOR_SKIP_PACKAGE=1 skips it,
except under CI (CI=true), where anything that would skip it fails it instead. Every process
it starts is waited for or stopped by its pid."""

from __future__ import annotations

import base64
import grp
import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import time
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.support.signers import (
    OpenDkim,
    Rspamd,
    opendkim_skip_reason,
    private_root,
    remove_private_root,
    rspamd_skip_reason,
)

# the build (1 to 2.5 minutes) counts towards the first test's time
pytestmark = [pytest.mark.package, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
CI = bool(os.environ.get("CI"))
# a second OpenDKIM instance, as rotator-install-opendkim@NAME.socket would serve it
INSTANCE = "pkgtest"
SOCKET_DIR = Path("/run/rotator-install")
# everything the package or its scripts make; none of it may be there before or after
MADE = [
    "/opt/rotator",
    "/usr/bin/rotator",
    "/usr/lib/rotator",
    "/etc/rotator",
    "/etc/polkit-1/rules.d/50-rotator-signers.rules",
    "/lib/systemd/system/rotator.service",
    "/lib/systemd/system/rotator-install-opendkim.socket",
    "/lib/systemd/system/rotator-install-opendkim@.socket",
    "/lib/systemd/system/rotator-install-opendkim@.service",
    "/usr/share/doc/rotator",
    "/var/lib/rotator",
    "/var/lib/rotator-targets",
    "/var/lib/opendkim",
]


def run(
    cmd: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """cmd, waited for; its output in the failure message if it fails."""
    proc = subprocess.run(
        list(cmd),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive", **(env or {})},
        stdin=subprocess.DEVNULL,
        cwd=ROOT,  # apt-get install ./dist/...
    )
    assert proc.returncode == 0, f"{cmd}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def installed() -> bool:
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f", "${db:Status-Status}", "rotator"],
        capture_output=True,
        text=True,
    )
    return proc.returncode == 0 and proc.stdout.strip() not in ("", "not-installed")


def why_not() -> str | None:
    if not shutil.which("dpkg-deb") or not Path("/etc/debian_version").exists():
        return "not a Debian machine"
    if os.geteuid() != 0:
        return "needs root: it installs and purges a package"
    if installed():
        return "a rotator package is installed here: the test would replace it"
    there = [p for p in MADE if os.path.lexists(p)]
    if there:
        return f"{', '.join(there)} already exist: the test would remove them"
    for name in ("user", "group"):
        try:
            (pwd.getpwnam if name == "user" else grp.getgrnam)("rotator")
            return f"a rotator {name} exists: the test would remove it"
        except KeyError:
            pass
    for reason in (opendkim_skip_reason(), rspamd_skip_reason()):
        if reason:
            return reason
    for tool in ("lintian", "systemd-analyze", "apt-get", "runuser"):
        if not shutil.which(tool):
            return f"{tool} is missing (.ci/run installs it)"
    return None


@pytest.fixture(scope="module")
def deb() -> Path:
    if os.environ.get("ROTATOR_SKIP_PACKAGE") and not CI:
        pytest.skip("ROTATOR_SKIP_PACKAGE is set")
    reason = why_not()
    if reason:
        if CI:
            pytest.fail(f"the package test cannot run under CI: {reason}")
        pytest.skip(reason)
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    began = time.monotonic()
    run(["bash", str(ROOT / "packaging/deb/build.sh")], timeout=1200)
    print(f"built in {time.monotonic() - began:.0f} s")
    path = ROOT / "dist" / f"rotator_{VERSION}_{arch}.deb"
    assert path.is_file()
    return path


def test_lintian_finds_no_error(deb: Path) -> None:
    # errors fail; the warnings left are listed, with their reasons, in docs/deploy-package.md
    proc = subprocess.run(
        ["lintian", "--fail-on", "error", "--no-tag-display-limit", str(deb)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    errors = [line for line in proc.stdout.splitlines() if line.startswith("E:")]
    assert proc.returncode == 0 and not errors, proc.stdout + proc.stderr
    known = {
        "no-manual-page",
        "script-not-executable",
        "unusual-interpreter",
    }
    tags = {line.split()[2] for line in proc.stdout.splitlines() if line.startswith("W:")}
    assert tags <= known, f"new lintian warnings (list them in docs/deploy-package.md): {tags}"


def mode_of(path: str) -> tuple[str, str, int]:
    st = os.lstat(path)
    return (
        pwd.getpwuid(st.st_uid).pw_name,
        grp.getgrgid(st.st_gid).gr_name,
        stat.S_IMODE(st.st_mode),
    )


# path -> (owner, group, mode): what docs/deploy-package.md promises after an install on a
# host with OpenDKIM, rspamd and Exim (their users and groups exist)
PROMISED = {
    "/opt/rotator": ("root", "root", 0o755),
    "/opt/rotator/bin/rotator": ("root", "root", 0o755),
    "/etc/rotator": ("root", "root", 0o755),
    "/etc/rotator/rotator.toml": ("root", "root", 0o644),
    "/etc/rotator/policies": ("root", "root", 0o755),
    "/etc/rotator/policies/default.toml": ("root", "root", 0o644),
    "/etc/polkit-1/rules.d/50-rotator-signers.rules": ("root", "root", 0o644),
    "/usr/lib/rotator/install-opendkim": ("root", "root", 0o755),
    "/var/lib/rotator": ("rotator", "rotator", 0o700),
    "/var/lib/opendkim": ("root", "root", 0o755),
    "/var/lib/opendkim/rotator": ("opendkim", "opendkim", 0o750),
    "/var/lib/opendkim/rotator/keys": ("opendkim", "opendkim", 0o700),
    "/var/lib/opendkim/rotator/KeyTable": ("opendkim", "opendkim", 0o640),
    "/var/lib/opendkim/rotator/SigningTable": ("opendkim", "opendkim", 0o640),
    "/var/lib/rotator-targets": ("root", "root", 0o755),
    "/var/lib/rotator-targets/rspamd": ("rotator", "_rspamd", 0o2750),
    "/var/lib/rotator-targets/rspamd/keys": ("rotator", "_rspamd", 0o2750),
    "/var/lib/rotator-targets/rspamd/dkim_signing.conf": ("rotator", "_rspamd", 0o640),
    "/var/lib/rotator-targets/exim": ("rotator", "Debian-exim", 0o2750),
    "/var/lib/rotator-targets/exim/keys": ("rotator", "Debian-exim", 0o2750),
    "/var/lib/rotator-targets/exim/dkim_senders": ("rotator", "Debian-exim", 0o640),
}
EMPTY = [p for p in PROMISED if p.endswith(("Table", ".conf", "dkim_senders"))]
UNITS = [
    "rotator.service",
    "rotator-install-opendkim.socket",
    f"rotator-install-opendkim@{INSTANCE}.socket",
    "rotator-install-opendkim@1-2-0.service",  # a connection's instance
]


def check_installed() -> None:
    assert run(["/usr/bin/rotator", "--version"]).stdout.strip() == f"rotator, version {VERSION}"
    assert os.readlink("/usr/bin/rotator") == "/opt/rotator/bin/rotator"
    user = pwd.getpwnam("rotator")
    assert (user.pw_dir, user.pw_shell) == ("/var/lib/rotator", "/usr/sbin/nologin")
    assert user.pw_uid < 1000 and grp.getgrgid(user.pw_gid).gr_name == "rotator"
    wrong = {p: mode_of(p) for p, want in PROMISED.items() if mode_of(p) != want}
    assert not wrong, f"owners and modes differ from the promised ones: {wrong}"
    assert all(os.path.getsize(p) == 0 for p in EMPTY)
    # the venv is Debian's python3.11, at its final place
    cfg = Path("/opt/rotator/pyvenv.cfg").read_text()
    assert "home = /usr/bin" in cfg and "/opt/rotator" in cfg
    assert os.readlink("/opt/rotator/bin/python3.11") == "/usr/bin/python3.11"
    assert Path("/opt/rotator/bin/rotator").read_text().startswith("#!/opt/rotator/bin/python\n")
    # bytecode compiled by postinst (none is shipped)
    assert list(Path("/opt/rotator/lib/python3.11/site-packages/rotator").glob("__pycache__/*.pyc"))
    conffiles = run(["dpkg-query", "-W", "-f", "${Conffiles}", "rotator"]).stdout
    for path in (
        "/etc/rotator/rotator.toml",
        "/etc/rotator/policies/default.toml",
        "/etc/polkit-1/rules.d/50-rotator-signers.rules",
    ):
        assert f" {path} " in conffiles
    # the units load, and every program they name exists
    run(["systemd-analyze", "verify", "--man=no", *UNITS], timeout=120)


def check_signers_start_on_the_empty_tables() -> None:
    """OpenDKIM and rspamd start on the tables postinst made, before rotator wrote any."""
    base = private_root()
    try:
        od_dir = Path("/var/lib/opendkim/rotator")
        with OpenDkim(base, od_dir / "KeyTable", od_dir / "SigningTable"):
            pass
        with Rspamd(base, Path("/var/lib/rotator-targets/rspamd/dkim_signing.conf")):
            pass
    finally:
        remove_private_root(base)


def check_init() -> None:
    """`rotator init` as rotator on the installed example config, once the operator put the
    TSIG secret beside it (its only missing piece: its primary is never asked by init)."""
    secret = Path("/etc/rotator/tsig.secret")
    secret.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    shutil.chown(secret, "root", "rotator")
    secret.chmod(0o640)
    out = run(["runuser", "-u", "rotator", "--", "/usr/bin/rotator", "init"]).stdout
    assert "database    /var/lib/rotator/rotator.db" in out
    assert mode_of("/var/lib/rotator/rotator.db")[:2] == ("rotator", "rotator")
    assert mode_of("/var/lib/rotator/audit.key") == ("rotator", "rotator", 0o400)
    # a read-only command as root
    run(["/usr/bin/rotator", "status"])


def bundle() -> bytes:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    pem = b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n"
    lines: list[dict[str, object]] = [
        {"version": 4, "manage_keys": True, "hold": False},
        {"table": "KeyTable", "mode": "0640", "data": b64(b"k1 example.test:s1:keys/k1.pem\n")},
        {"table": "SigningTable", "mode": "0640", "data": b64(b"*@example.test k1\n")},
        {"key": "keys/k1.pem", "mode": "0600", "data": b64(pem)},
        {"end": {"tables": 2, "keys": 1}},
    ]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def check_installer_launcher() -> None:
    """What rotator-install-opendkim@NAME.socket does with a connection (Accept=yes), done by
    hand: the packaged launcher, as opendkim, with the accepted connection on stdin and
    stdout, finds its directory from the socket's path and installs the bundle there."""
    directory = Path(f"/var/lib/opendkim/rotator-{INSTANCE}")
    directory.mkdir(mode=0o750)
    shutil.chown(directory, "opendkim", "opendkim")
    made_socket_dir = not SOCKET_DIR.exists()
    SOCKET_DIR.mkdir(mode=0o755, exist_ok=True)
    path = SOCKET_DIR / f"opendkim-{INSTANCE}.sock"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(str(path))
            server.listen(1)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.connect(str(path))
                conn, _ = server.accept()
                with conn:
                    proc = subprocess.Popen(
                        [
                            "runuser",
                            "-u",
                            "opendkim",
                            "--",
                            "/usr/bin/python3",
                            "-I",
                            "/usr/lib/rotator/install-opendkim",
                        ],
                        stdin=conn.fileno(),
                        stdout=conn.fileno(),
                        stderr=subprocess.PIPE,
                    )
                try:
                    client.sendall(bundle())
                    client.shutdown(socket.SHUT_WR)
                    client.settimeout(60)
                    answer = b""
                    while chunk := client.recv(4096):
                        answer += chunk
                    _, err = proc.communicate(timeout=60)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait(10)
        assert proc.returncode == 0, err
        assert json.loads(answer) == {"written": 3, "unchanged": 0, "removed": 0}
        assert mode_of(str(directory / "keys/k1.pem")) == ("opendkim", "opendkim", 0o600)
        assert (directory / "SigningTable").read_text() == "*@example.test k1\n"
    finally:
        path.unlink(missing_ok=True)
        if made_socket_dir:
            SOCKET_DIR.rmdir()


def purge_everything() -> None:
    """The clean-up whatever happened: the package purged with its keys, and what a failed
    run may have left."""
    if installed():
        subprocess.run(
            ["apt-get", "purge", "-y", "rotator"],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive", "ROTATOR_PURGE_KEYS": "yes"},
            capture_output=True,
            timeout=300,
        )
    for path in (
        "/var/lib/rotator",
        "/var/lib/rotator-targets",
        "/var/lib/opendkim",
        "/etc/rotator",
    ):
        shutil.rmtree(path, ignore_errors=True)
    subprocess.run(["deluser", "--system", "--quiet", "rotator"], capture_output=True)
    subprocess.run(["delgroup", "--system", "--quiet", "rotator"], capture_output=True)


def left_behind() -> list[str]:
    there = [p for p in MADE if os.path.lexists(p)]
    for name, lookup in (("user", pwd.getpwnam), ("group", grp.getgrnam)):
        try:
            lookup("rotator")
            there.append(f"the rotator {name}")
        except KeyError:
            pass
    return there


@pytest.fixture
def package_on_this_machine(deb: Path) -> Iterator[Path]:
    try:
        yield deb
    finally:
        purge_everything()


def test_install_init_remove_purge(package_on_this_machine: Path) -> None:
    deb = package_on_this_machine
    began = time.monotonic()
    install = run(["apt-get", "install", "-y", f"./{deb.relative_to(ROOT)}"], timeout=600)
    assert "nothing runs yet" in install.stderr + install.stdout
    check_installed()
    check_signers_start_on_the_empty_tables()
    check_init()
    check_installer_launcher()

    # remove: the program goes, the configuration, the state and the user stay
    run(["apt-get", "remove", "-y", "rotator"])
    assert not os.path.lexists("/opt/rotator") and not os.path.lexists("/usr/bin/rotator")
    assert Path("/etc/rotator/rotator.toml").is_file()
    assert Path("/var/lib/rotator/rotator.db").is_file()
    pwd.getpwnam("rotator")

    # purge: what postinst made goes, the keys stay and are named
    out = run(["apt-get", "purge", "-y", "rotator"])
    said = out.stdout + out.stderr
    assert "kept /var/lib/rotator: rotator's database, its audit key and 0 private keys" in said
    assert f"kept /var/lib/opendkim/rotator-{INSTANCE}: it holds 1 private keys" in said
    assert "kept what an operator added to /etc/rotator: /etc/rotator/tsig.secret" in said
    assert Path("/var/lib/rotator/audit.key").is_file()
    assert Path(f"/var/lib/opendkim/rotator-{INSTANCE}/keys/k1.pem").is_file()
    assert not os.path.lexists("/var/lib/opendkim/rotator")  # its tables were still empty
    assert not os.path.lexists("/var/lib/rotator-targets")
    assert not os.path.lexists("/etc/rotator/rotator.toml")
    pwd.getpwnam("rotator")  # it owns what was kept

    # installed again, it takes up the kept state; purged with ROTATOR_PURGE_KEYS=yes,
    # nothing is left
    run(["apt-get", "install", "-y", f"./{deb.relative_to(ROOT)}"], timeout=600)
    run(["runuser", "-u", "rotator", "--", "/usr/bin/rotator", "init"])
    Path("/etc/rotator/tsig.secret").unlink()
    out = run(["apt-get", "purge", "-y", "rotator"], env={"ROTATOR_PURGE_KEYS": "yes"})
    said = out.stdout + out.stderr
    assert "wiped /var/lib/rotator: every file zeroed and removed" in said
    assert f"wiped /var/lib/opendkim/rotator-{INSTANCE}" in said
    assert left_behind() == []
    print(f"install, checks, remove, purge, install, purge: {time.monotonic() - began:.0f} s")
