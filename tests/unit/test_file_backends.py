"""The backends that rebuild files, without their servers: the zone file and its SOA
serial, batches serialized by the lock, the commands' failures as one line, and both kinds'
settings refused at load (tinydns's lines: test_tinydns_backend.py). tests/integration/
backends runs them against tinydns and NSD."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from rotator.adapters.dns.owned import run
from rotator.adapters.dns.zonefile import MARKER, ZoneFilePublisher, next_serial, zone_line
from rotator.config.backends.zonefile import ZoneFileConfig
from rotator.domain.errors import PublishError
from rotator.domain.reasons import Reason
from rotator.ports import RecordChange

from .clirun import refused
from .test_dns_backends import backends_only

ZONE = "dkim.esp.test"
RSA = "v=DKIM1; k=rsa; p=" + "A" * 392  # 410 octets, as an RSA-2048 key's record
HEADER = "$TTL 60\n@ IN SOA ns1 hostmaster ( 7 2 1 600 2 )\n@ IN NS ns1\nns1 IN A 192.0.2.1\n"


def rec(selector: str, text: str | None = RSA, zone: str = ZONE) -> RecordChange:
    return RecordChange(f"{selector}.myesp._domainkey.{zone}.", 300, text)


# --- zonefile --------------------------------------------------------------------------------


def test_the_serial_only_goes_up_in_the_header_style() -> None:
    now = 1_800_000_000.0  # 2027-01-15
    assert next_serial(None, 1, now) == 1_800_000_000  # seconds since 1970
    assert next_serial(1_800_000_005, 1, now) == 1_800_000_006  # never backwards
    assert next_serial(None, 2027011503, now) == 2027011504  # above the header's
    assert next_serial(None, 2026010100, now) == 2027011500  # YYYYMMDDnn
    assert next_serial(2027011599, 2026010100, now) == 2027011600
    with pytest.raises(PublishError, match="serial would pass"):
        next_serial(2**32 - 1, 1, now)


def test_a_zone_line_quotes_each_string() -> None:
    line = zone_line(rec("s1", 'v=DKIM1; n="x\\"; p=' + "C" * 300))
    assert line.startswith(f's1.myesp._domainkey.{ZONE}. 300 IN TXT "v=DKIM1; n=\\"x\\\\\\"; p=')
    assert line.endswith('" "' + "C" * 64 + '"\n')  # 319 octets: 255 + 64


def zonefile(
    tmp_path: Path, reload: tuple[str, ...] = ("true",), **kw: object
) -> ZoneFilePublisher:
    (tmp_path / "zones").mkdir(exist_ok=True)
    (tmp_path / "headers").mkdir(exist_ok=True)
    (tmp_path / "headers" / f"{ZONE}.zone").write_text(HEADER)
    cfg = ZoneFileConfig(
        name="files",
        kind="zonefile",
        zones=(ZONE,),
        nameservers=(),
        timeout=5.0,
        directory=tmp_path / "zones",
        header=str(tmp_path / "headers" / "{zone}.zone"),
        reload=reload,
        **kw,  # type: ignore[arg-type]
    )
    return ZoneFilePublisher(cfg)


def serial(path: Path) -> int:
    soa = next(line for line in path.read_text().splitlines() if " SOA " in line)
    return int(soa.split()[6])


def test_the_zone_file_is_the_header_with_a_new_serial_then_rotator_s_records(
    tmp_path: Path,
) -> None:
    pub = zonefile(tmp_path)
    path = tmp_path / "zones" / f"{ZONE}.zone"
    assert pub.publish([(ZONE, [rec("s1"), rec("s2")])]) == [f"{path} serial {serial(path)}"]
    text = path.read_text()
    head, records = text.split(MARKER + "\n")
    assert f"$ORIGIN {ZONE}.\n{ZONE}. 60 IN SOA ns1.{ZONE}. hostmaster.{ZONE}. " in head
    assert f"{ZONE}. 60 IN NS ns1.{ZONE}.\n" in head and f"ns1.{ZONE}. 60 IN A 192.0.2.1" in head
    assert records.count(" IN TXT ") == 2
    first = serial(path)
    # a restarted rotator reads the serial and the records from the file it wrote
    again = zonefile(tmp_path)
    again.publish([(ZONE, [rec("s1", "v=DKIM1; p="), rec("s2", None)])])
    assert serial(path) == first + 1
    records = path.read_text().split(MARKER + "\n")[1]
    assert records == f's1.myesp._domainkey.{ZONE}. 300 IN TXT "v=DKIM1; p="\n'


def test_a_bad_header_or_check_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    pub = zonefile(tmp_path, check=("sh", "-c", 'grep -q "s2.myesp" {file} && exit 3 || true'))
    path = tmp_path / "zones" / f"{ZONE}.zone"
    pub.publish([(ZONE, [rec("s1")])])
    before = path.read_text()
    (result,) = pub.publish([(ZONE, [rec("s2")])])
    assert isinstance(result, PublishError) and "check of dkim.esp.test" in result.reason
    assert "exited 3" in result.reason and path.read_text() == before
    (tmp_path / "headers" / f"{ZONE}.zone").write_text("$TTL 60\n@ IN NS ns1\n")
    assert "has no SOA" in (pub.zone_problem(ZONE) or "")
    (result,) = pub.publish([(ZONE, [rec("s3")])])
    assert isinstance(result, PublishError) and "\n" not in result.reason
    assert path.read_text() == before
    assert "no header" in (pub.zone_problem("other.test") or "")


def test_a_name_the_header_holds_is_refused(tmp_path: Path) -> None:
    pub = zonefile(tmp_path)
    header = tmp_path / "headers" / f"{ZONE}.zone"
    header.write_text(HEADER + 's1.myesp._domainkey IN TXT "old"\n')
    (result,) = pub.publish([(ZONE, [rec("s1")])])
    assert isinstance(result, PublishError) and "remove it from the header" in result.reason


def test_a_name_rotator_owns_that_the_header_takes_later_is_refused(tmp_path: Path) -> None:
    pub = zonefile(tmp_path)
    path = tmp_path / "zones" / f"{ZONE}.zone"
    pub.publish([(ZONE, [rec("s1")])])
    before = path.read_text()
    header = tmp_path / "headers" / f"{ZONE}.zone"
    header.write_text(HEADER + 's1.myesp._domainkey IN TXT "operator"\n')
    # a batch about another name would otherwise write both s1 records
    (result,) = pub.publish([(ZONE, [rec("s2")])])
    assert isinstance(result, PublishError) and "remove it from the header" in result.reason
    assert f"s1.myesp._domainkey.{ZONE}" in result.reason and path.read_text() == before


def test_reload_once_per_zone_or_once_per_batch(tmp_path: Path) -> None:
    log = tmp_path / "reloads"
    other = "b.esp.test"
    for per_zone, expected in ((True, {ZONE, other}), (False, {"all"})):
        log.unlink(missing_ok=True)
        arg = "{zone}" if per_zone else "all"
        pub = zonefile(tmp_path, reload=("sh", "-c", f'echo "$0" >> {log}', arg))
        (tmp_path / "headers" / f"{other}.zone").write_text(HEADER)
        results = pub.publish([(ZONE, [rec("s1")]), (other, [rec("s1", zone=other)])])
        assert all(isinstance(r, str) for r in results), results
        assert set(log.read_text().split()) == expected
        assert len(log.read_text().split()) == len(expected)


def test_a_failed_reload_fails_the_zones_and_says_why(tmp_path: Path) -> None:
    refused_key = ("sh", "-c", "echo 'error: SSL handshake failed' >&2; exit 1")
    (result,) = zonefile(tmp_path, reload=refused_key).publish([(ZONE, [rec("s1")])])
    assert isinstance(result, PublishError) and result.code == Reason.DNS_CREDENTIAL
    assert result.reason.endswith("exited 1: error: SSL handshake failed")
    (result,) = zonefile(tmp_path, reload=("sh", "-c", "exit 2")).publish([(ZONE, [rec("s1")])])
    assert isinstance(result, PublishError) and result.code == Reason.DNS_UPDATE_FAILED


def test_outside_the_zone_fails_that_zone_alone(tmp_path: Path) -> None:
    pub = zonefile(tmp_path)
    other = "b.esp.test"
    bad, good = pub.publish([(other, [rec("s1", zone="elsewhere.test")]), (ZONE + ".", [])])
    assert isinstance(bad, PublishError) and "outside zone b.esp.test" in bad.reason
    assert good == "nothing to change"


def test_two_publishers_on_one_directory_take_turns(tmp_path: Path) -> None:
    """Two publishers on one directory (as the daemon and an operator's command: each its
    own thread lock, so only the flock keeps them apart), each adding records in many
    batches at once: none is lost."""
    slow_reload = ("sh", "-c", "sleep 0.01")
    pubs = [zonefile(tmp_path, reload=slow_reload) for _ in range(2)]
    errors: list[object] = []

    def add(p: int) -> None:
        for i in range(15):
            (r,) = pubs[p].publish([(ZONE, [rec(f"p{p}n{i}")])])
            if not isinstance(r, str):
                errors.append(r)

    threads = [threading.Thread(target=add, args=(p,)) for p in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    records = (tmp_path / "zones" / f"{ZONE}.zone").read_text().split(MARKER + "\n")[1]
    assert len(records.splitlines()) == 30


# --- commands ---------------------------------------------------------------------------------


def test_a_command_that_hangs_is_killed_with_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "child"
    started = time.monotonic()
    with pytest.raises(PublishError, match=r"took over 0.5s") as caught:
        run(["sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"], "deliver", 0.5)
    assert caught.value.code == Reason.DNS_TIMEOUT and time.monotonic() - started < 5
    child = int(pidfile.read_text())
    for _ in range(50):  # reaped by init once killed
        if not Path(f"/proc/{child}").exists() or "Z" in _state(child):
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"the deliver command's child {child} outlived it")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0]
    except OSError:
        return "Z"


def test_a_command_refused_its_user_is_a_credential_failure(tmp_path: Path) -> None:
    with pytest.raises(PublishError) as caught:
        run(["sh", "-c", "echo 'Permission denied (publickey).' >&2; exit 255"], "deliver", 5)
    assert caught.value.code == Reason.DNS_CREDENTIAL
    with pytest.raises(PublishError, match="nsd-control-nowhere not found"):
        run(["nsd-control-nowhere"], "reload", 5)
    if os.geteuid() != 0:  # root writes anywhere
        (tmp_path / "ro").mkdir(mode=0o500)
        with pytest.raises(PublishError) as caught:
            run(["sh", "-c", f"echo x > {tmp_path}/ro/f"], "deliver", 5)
        assert caught.value.code == Reason.DNS_CREDENTIAL


# --- settings ----------------------------------------------------------------------------------

TINYDNS = """
[[dns.backends]]
name = "tiny"
kind = "tinydns"
zones = ["dkim.esp.test"]
directory = "tinydns"
base_data = "base.data"
roots = ["/etc/tinydns/root"]
"""
ZONEFILE = """
[[dns.backends]]
name = "nsd"
kind = "zonefile"
zones = ["dkim.esp.test"]
directory = "zones"
header = "headers/{zone}.zone"
reload = ["nsd-control", "reload", "{zone}"]
"""


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        (TINYDNS.replace('roots = ["/etc/tinydns/root"]', ""), "backend tiny: roots: give the"),
        (TINYDNS + 'deliver = ["ssh", "dns2"]\n', "deliver: must be a list of commands, each"),
        (TINYDNS + "tcp = 1\n", "backend tiny: tcp: must be true or false"),
        (TINYDNS.replace('base_data = "base.data"', ""), "backend tiny: base_data: missing"),
        (ZONEFILE.replace('reload = ["nsd-control", "reload", "{zone}"]', ""), "reload: must be"),
        (ZONEFILE.replace('"{zone}"]', '"{file}"]'), "reload: knows {zone} only"),
        (ZONEFILE.replace("reload = [", "reload = []\n#"), "reload: empty; give the command"),
        (ZONEFILE + 'check = "nsd-checkzone \'{zone}"\n', 'check: "nsd-checkzone \'{zone}"'),
        (ZONEFILE + "roots = []\n", "backend nsd: unknown setting 'roots'"),
    ],
)
def test_bad_file_backends_are_one_line_at_load(tmp_path: Path, table: str, problem: str) -> None:
    line = refused(backends_only(tmp_path, table), "init")
    assert problem in line, line
