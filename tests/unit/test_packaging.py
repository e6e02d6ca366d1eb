"""The packaging inputs stay consistent: requirements/runtime.txt is a part of lock.txt (same
pins, same hashes) that covers rotator's dependencies, the Debian package ships deploy/'s
units, and the OpenDKIM installer's launcher maps each installer socket to its directory
(the whole package is built, installed and purged by tests/package/test_deb.py)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
import socket
import tomllib
from pathlib import Path
from types import ModuleType
from typing import cast

import pytest

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)((?: \\\n    --hash=\S+)+)", re.M)


def pins(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, sorted hashes) of a hash-locked requirements file"""
    return {
        m.group(1).lower(): (m.group(2), sorted(re.findall(r"--hash=(\S+)", m.group(3))))
        for m in PIN.finditer(path.read_text())
    }


def test_the_runtime_lock_is_a_part_of_the_full_lock() -> None:
    runtime, lock = pins(ROOT / "requirements/runtime.txt"), pins(ROOT / "requirements/lock.txt")
    assert runtime
    for name, pinned in runtime.items():
        assert lock.get(name) == pinned, f"{name}: requirements/lock.sh was not run"


def test_the_runtime_lock_has_every_dependency_and_no_tool() -> None:
    runtime = pins(ROOT / "requirements/runtime.txt")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dep in project["dependencies"]:
        name = re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0].lower()
        assert name in runtime, f"{name} is a dependency but not in requirements/runtime.txt"
    for tool in ("pytest", "mypy", "ruff", "setuptools", "wheel", "moto", "boto3"):
        assert tool not in runtime


def test_the_cli_reports_the_version_the_package_is_built_with() -> None:
    # packaging/deb/build.sh names the .deb after pyproject.toml's version; `rotator
    # --version` prints rotator.__version__
    import rotator

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert rotator.__version__ == project["version"]


def test_the_package_ships_every_unit_in_deploy() -> None:
    build = (ROOT / "packaging/deb/build.sh").read_text()
    units = sorted(
        p.name for p in (ROOT / "deploy").iterdir() if p.suffix in (".service", ".socket")
    )
    assert units == [
        "rotator-install-opendkim.socket",
        "rotator-install-opendkim@.service",
        "rotator-install-opendkim@.socket",
        "rotator.service",
    ]
    for name in units:
        assert f"deploy/{name}" in build
    assert "deploy/rotator-install-opendkim " in build  # the launcher
    assert "--root-owner-group" in build


def launcher() -> ModuleType:
    path = ROOT / "deploy/rotator-install-opendkim"
    loader = importlib.machinery.SourceFileLoader("rotator_install_opendkim", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("sock", "directory"),
    [
        ("/run/rotator-install/opendkim.sock", "/var/lib/opendkim/rotator"),
        ("/run/rotator-install/opendkim-ed25519.sock", "/var/lib/opendkim/rotator-ed25519"),
        ("/run/rotator-install/opendkim-mx2_b.sock", "/var/lib/opendkim/rotator-mx2_b"),
    ],
)
def test_the_launcher_maps_each_socket_to_its_directory(sock: str, directory: str) -> None:
    assert cast(str, launcher().directory_for(sock)) == directory


@pytest.mark.parametrize(
    "sock",
    [
        "/run/other/opendkim.sock",
        "/run/rotator-install/rspamd.sock",
        "/run/rotator-install/opendkim-.sock",
        "/run/rotator-install/opendkim-../x.sock",
        "/run/rotator-install/opendkim-A.sock",
        "/run/rotator-install/opendkim-a/b.sock",
        "",
    ],
)
def test_the_launcher_refuses_any_other_socket(sock: str) -> None:
    with pytest.raises(ValueError):
        launcher().directory_for(sock)


def test_the_launcher_reads_the_listening_sockets_path(tmp_path: Path) -> None:
    path = str(tmp_path / "opendkim-x.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(path)
            conn, _ = server.accept()
            with conn:
                # what systemd hands the service (Accept=yes): the accepted connection
                assert cast(str, launcher().socket_path_of(conn.fileno())) == path
