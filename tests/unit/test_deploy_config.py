"""deploy/ stays honest: the example config's [[targets]] parse with rotator's own parser and
are what the README describes, the MTA-side snippets name the same directories and sockets,
and the systemd units carry the hardening the README promises."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from rotator.config.targets import TargetConfig, parse_targets

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SOCKET = "/run/rotator-install/opendkim.sock"
LAUNCHER = "/usr/lib/rotator/install-opendkim"
OPENDKIM_DIR = Path("/var/lib/opendkim/rotator")
RSPAMD_DIR = Path("/var/lib/rotator-targets/rspamd")
EXIM_DIR = Path("/var/lib/rotator-targets/exim")

Unit = dict[str, dict[str, list[str]]]


def unit(name: str) -> Unit:
    """A systemd unit file as section -> key -> every value given (keys may repeat)."""
    out: Unit = {}
    section = ""
    for raw in (DEPLOY / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            out.setdefault(section, {})
            continue
        key, sep, value = line.partition("=")
        assert sep and section, f"{name}: not a unit file line: {raw!r}"
        out[section].setdefault(key.strip(), []).append(value.strip())
    return out


def one(u: Unit, section: str, key: str) -> str:
    values = u.get(section, {}).get(key, [])
    assert len(values) == 1, f"[{section}] {key}: expected one value, got {values}"
    return values[0]


def words(u: Unit, section: str, key: str) -> list[str]:
    return [w for v in u.get(section, {}).get(key, []) for w in v.split()]


def load_targets(text: str) -> tuple[TargetConfig, ...]:
    data: dict[str, Any] = tomllib.loads(text)
    return parse_targets(data, DEPLOY / "rotator.toml", DEPLOY)


@pytest.fixture(scope="module")
def targets() -> dict[str, TargetConfig]:
    text = (DEPLOY / "rotator.toml").read_text()
    assert "[signer]" not in text, "deploy/rotator.toml shows [[targets]], not the older [signer]"
    return {t.name: t for t in load_targets(text)}


def test_the_example_config_has_an_opendkim_and_an_rspamd_target(
    targets: dict[str, TargetConfig],
) -> None:
    assert list(targets) == ["mx1-opendkim-rsa", "mx1-rspamd"]
    assert [t.format for t in targets.values()] == ["opendkim", "rspamd"]
    assert [t.probe.kind for t in targets.values()] == ["milter", "rspamd"]


def test_opendkim_goes_through_the_socket_installer(targets: dict[str, TargetConfig]) -> None:
    od = targets["mx1-opendkim-rsa"]
    assert od.deliver == ("/usr/bin/socat", "-t", "60", "-", f"UNIX-CONNECT:{SOCKET}")
    assert not od.local
    assert od.directory == OPENDKIM_DIR
    assert od.algorithms == ("rsa",)  # SignatureAlgorithm is global: one per instance
    assert od.key_mode == 0o600  # never group-readable: OpenDKIM's group may have others
    assert od.reload == ("/usr/bin/systemctl", "reload", "opendkim.service")
    assert od.probe.address == "inet:8891@127.0.0.1"
    # the polkit rule allows exactly that reload
    rules = (DEPLOY / "50-rotator-signers.rules").read_text()
    assert '"opendkim.service"' in rules and '"rspamd.service"' in rules
    assert '"reload"' in rules


def test_rspamd_is_written_locally_into_a_directory_the_unit_may_write(
    targets: dict[str, TargetConfig],
) -> None:
    rs = targets["mx1-rspamd"]
    assert rs.local and rs.deliver == ()
    assert rs.directory == RSPAMD_DIR
    assert (rs.key_group, rs.key_mode) == ("_rspamd", 0o640)
    assert rs.reload == ("/usr/bin/systemctl", "reload", "rspamd.service")
    assert rs.probe.url == "http://127.0.0.1:11333"
    writable = [w.lstrip("-") for w in words(unit("rotator.service"), "Service", "ReadWritePaths")]
    assert "/var/lib/rotator-targets" in writable
    assert rs.directory.is_relative_to("/var/lib/rotator-targets")
    assert not rs.directory.is_relative_to("/var/lib/rotator")  # its state dir is 0700


def test_the_commented_exim_example_parses_too() -> None:
    lines = (DEPLOY / "rotator.toml").read_text().splitlines()
    start = lines.index("# [[targets]]")
    block = []
    for line in lines[start:]:
        if not line.startswith("# "):
            break
        block.append(line.removeprefix("# "))
    (exim,) = load_targets("\n".join(block))
    assert (exim.name, exim.format, exim.directory) == ("mx1-exim", "exim", EXIM_DIR)
    assert (exim.local, exim.key_group, exim.reload, exim.probe.kind) == (
        True,
        "Debian-exim",
        (),
        "none",
    )


def test_the_mta_snippets_name_the_targets_directories(targets: dict[str, TargetConfig]) -> None:
    od, rs = targets["mx1-opendkim-rsa"], targets["mx1-rspamd"]
    conf = (DEPLOY / "signers" / "opendkim.conf.snippet").read_text().splitlines()
    settings = {
        parts[0]: parts[1]
        for parts in (line.split(None, 1) for line in conf if line and not line.startswith("#"))
    }
    assert settings["KeyTable"] == f"file:{od.directory}/KeyTable"
    assert settings["SigningTable"] == f"refile:{od.directory}/SigningTable"
    assert settings["Socket"] == od.probe.address
    assert settings["SignatureAlgorithm"] == "rsa-sha256"
    assert settings["MultipleSignatures"] == "yes"
    assert "127.0.0.1" in settings["InternalHosts"]  # where the milter probe comes from
    rspamd = (DEPLOY / "signers" / "rspamd-dkim_signing.conf").read_text()
    assert f'\n.include "{rs.directory}/dkim_signing.conf"\n' in rspamd
    exim = (DEPLOY / "signers" / "exim-transport.snippet").read_text()
    assert f"\nROTATOR_DKIM = {EXIM_DIR}\n" in exim
    assert "\nDKIM_STRICT = true\n" in exim


def test_the_installer_socket_only_lets_rotator_in() -> None:
    sock = unit("rotator-install-opendkim.socket")
    assert one(sock, "Socket", "ListenStream") == SOCKET
    assert one(sock, "Socket", "SocketUser") == "rotator"
    assert one(sock, "Socket", "SocketMode") == "0600"
    assert one(sock, "Socket", "Accept") == "yes"
    assert one(sock, "Install", "WantedBy") == "sockets.target"


def test_the_installer_socket_template_serves_a_second_opendkim_instance() -> None:
    sock = unit("rotator-install-opendkim@.socket")
    assert one(sock, "Socket", "ListenStream") == "/run/rotator-install/opendkim-%i.sock"
    assert one(sock, "Socket", "SocketUser") == "rotator"
    assert one(sock, "Socket", "SocketMode") == "0600"
    # Accept=yes: each connection runs rotator-install-opendkim@<connection>.service
    assert one(sock, "Socket", "Accept") == "yes"
    assert one(sock, "Install", "WantedBy") == "sockets.target"


def test_the_installer_runs_as_opendkim_confined_to_its_directory(
    targets: dict[str, TargetConfig],
) -> None:
    svc = unit("rotator-install-opendkim@.service")
    assert one(svc, "Service", "User") == "opendkim"
    assert one(svc, "Service", "Group") == "opendkim"
    assert one(svc, "Service", "StandardInput") == "socket"
    assert one(svc, "Service", "StandardOutput") == "socket"
    # the launcher (deploy/rotator-install-opendkim, packaged as /usr/lib/rotator/...) picks
    # the directory from the socket the connection came in on: tests/unit/test_packaging.py
    exec_start = one(svc, "Service", "ExecStart").split()
    assert exec_start == ["/usr/bin/python3", "-I", LAUNCHER]
    assert (DEPLOY / "rotator-install-opendkim").is_file()
    assert targets["mx1-opendkim-rsa"].directory == OPENDKIM_DIR
    # every instance's directory, /var/lib/opendkim/rotator[-NAME], and nothing else of /var
    assert words(svc, "Service", "ReadWritePaths") == [str(OPENDKIM_DIR.parent)]
    hardening = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateNetwork": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectHome": "yes",
        "RestrictSUIDSGID": "yes",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "UMask": "0077",
        "LimitCORE": "0",
    }
    assert {k: one(svc, "Service", k) for k in hardening} == hardening


def test_the_daemon_unit_keeps_its_hardening() -> None:
    svc = unit("rotator.service")
    hardening = {
        "User": "rotator",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "RestrictSUIDSGID": "yes",
        "StateDirectoryMode": "0700",
        "UMask": "0077",
        "CapabilityBoundingSet": "",
        "LimitCORE": "0",
        "MemorySwapMax": "0",
    }
    assert {k: one(svc, "Service", k) for k in hardening} == hardening
    # AF_UNIX: D-Bus for systemctl reload, and the installer's socket
    assert "AF_UNIX" in words(svc, "Service", "RestrictAddressFamilies")
    assert "/var/lib/rotator" in words(svc, "Service", "ReadWritePaths")
