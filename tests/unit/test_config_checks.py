"""Every setting of rotator.toml is checked when the config loads: `rotator init` (and so
`run --once` and every command) refuses a bad one with one line naming the setting, what is
wrong and how to write it, instead of a first activation or DNS exchange failing later."""

from __future__ import annotations

from pathlib import Path

import pytest

from rotator.config.settings import load_config

from .clirun import ok, refused, write_config

SIGNER = '[signer]\nkey_table = "opendkim/KeyTable"\nsigning_table = "opendkim/SigningTable"\n'


def config(tmp_path: Path, replace: tuple[str, str] = ("", ""), add: str = "") -> Path:
    """The CLI tests' config with one line replaced, or a table added at the end; a
    [[targets]] table takes the place of the older [signer] table."""
    cfg = write_config(tmp_path)
    text = cfg.read_text()
    if replace[0]:
        assert replace[0] in text
        text = text.replace(*replace)
    if add.startswith("[[targets]]"):
        text = text.replace(SIGNER, "")
    cfg.write_text(text + add)
    return cfg


def target(probe: str, fmt: str = "json", name: str = "mx1") -> str:
    return (
        f'[[targets]]\nname = "{name}"\nformat = "{fmt}"\ndirectory = "{name}"\nprobe = {probe}\n'
    )


@pytest.mark.parametrize("command", [("init",), ("run", "--once")])
def test_a_milter_probe_address_without_a_port_is_refused_at_load(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    probe = '{ kind = "milter", address = "inet:notaport@127.0.0.1" }'
    line = refused(config(tmp_path, add=target(probe)), *command)
    assert 'target mx1: probe.address "inet:notaport@127.0.0.1" is not a milter address' in line
    assert "invalid port 'notaport'" in line
    assert line.endswith('write e.g. "inet:8891@127.0.0.1" or "unix:/run/opendkim/opendkim.sock"')


@pytest.mark.parametrize("command", [("init",), ("run", "--once")])
def test_an_rspamd_probe_url_that_is_no_url_is_refused_at_load(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    probe = '{ kind = "rspamd", url = "::not a url::" }'
    line = refused(config(tmp_path, add=target(probe, "rspamd", "rspamd")), *command)
    assert 'target rspamd: probe.url "::not a url::" is not an http(s) URL' in line
    assert line.endswith('write e.g. "http://127.0.0.1:11333"')


@pytest.mark.parametrize(
    ("probe", "problem"),
    [
        ('{ kind = "milter", address = "unix:opendkim.sock" }', "path 'opendkim.sock' is not abs"),
        ('{ kind = "milter", address = "inet:8891@not a host" }', "neither an IP address nor"),
        ('{ kind = "milter", address = "inet:70000@127.0.0.1" }', "invalid port '70000'"),
        ('{ kind = "milter", address = "localhost" }', "it has no port"),
        ('{ kind = "milter", address = 8891 }', "probe.address: 8891 is not a string"),
        ('{ kind = "rspamd", url = "127.0.0.1:11333" }', "needs http:// or https://"),
        ('{ kind = "rspamd", url = "http://127.0.0.1:99999" }', "port out of range"),
        ('{ kind = "rspamd", url = "http://127.0.0.1:11333", timout = 3 }', "probe.timout: not"),
        ('{ kind = "milter", url = "http://127.0.0.1:11333" }', "probe.url: not a setting"),
    ],
)
def test_bad_probe_settings_are_one_line_at_load(tmp_path: Path, probe: str, problem: str) -> None:
    line = refused(config(tmp_path, add=target(probe)), "init")
    assert "target mx1: probe." in line and problem in line


def test_the_probe_forms_the_signers_use_are_accepted(tmp_path: Path) -> None:
    probes = [
        '{ kind = "milter", address = "inet:8891@127.0.0.1" }',
        '{ kind = "milter", address = "inet6:8891@::1" }',
        '{ kind = "milter", address = "[::1]:8891" }',
        '{ kind = "milter", address = "unix:/run/opendkim/opendkim.sock" }',
        '{ kind = "milter", address = "local:/run/opendkim/opendkim.sock", timeout = 3 }',
        '{ kind = "rspamd", url = "http://127.0.0.1:11333" }',
        '{ kind = "rspamd", url = "https://rspamd.example:11333/checkv2" }',
    ]
    blocks = "".join(target(p, name=f"t{n}") for n, p in enumerate(probes))
    ok(config(tmp_path, add=blocks), "init")


@pytest.mark.parametrize(
    ("replace", "add", "named", "problem"),
    [
        (("tick_seconds = 1", "tick_seconds = nan"), "", "tick_seconds", "above 0, up to 86400"),
        (("tick_seconds = 1", "tick_seconds = 1\ntick_second = 5"), "", "tick_second", "unknown"),
        (('key_dir = "keys"', 'key_dir = "ke\\u0000ys"'), "", "key_dir", "NUL character"),
        (("127.0.0.1:1", "dns.example:53"), "", "dns.primary", "'dns.example' is not an IP"),
        (("127.0.0.1:1", "[::1"), "", "dns.primary", "no closing ']'"),
        (('tsig_name = "rotator"', 'tsig_name = "rotator"\ntimeout = -1'), "", "dns.timeout", ""),
        (
            ('tsig_name = "rotator"', 'tsig_name = "rotator"\nnameserver_port = 70000'),
            "",
            "dns.nameserver_port",
            "from 1 to 65535",
        ),
        (
            ('tsig_name = "rotator"', 'tsig_name = "rotator"\nresolver = ["localhost:53"]'),
            "",
            "dns.resolver",
            "'localhost' is not an IP address",
        ),
        (
            ('tsig_name = "rotator"', 'tsig_name = "rotator"\nnameservers = ["ns1.example"]'),
            "",
            "dns.nameservers",
            "'ns1.example' is not an IP address",
        ),
        (
            ('tsig_name = "rotator"', 'tsig_name = "rotator"\nesp_nameservers = ["ns 1"]'),
            "",
            "dns.esp_nameservers",
            "may only hold letters",
        ),
        (('tsig_name = "rotator"', 'tsig_name = "a..b"'), "", "dns.tsig_name", "1-63 octets"),
        (('tsig_name = "rotator"', 'tsig_name = "rotator"\ntimeuot = 3'), "", "dns.timeuot", ""),
        (("", ""), '[audit]\nkeyfile = "audit.key"\n', "audit.keyfile", "unknown setting"),
        (
            ('signing_table = "opendkim/SigningTable"', 'signing_table = "o/ST"\nrelaod = "x"'),
            "",
            "signer.relaod",
            "unknown setting",
        ),
        (
            ("", ""),
            '[metrics]\nlisten = "not a host!:9469"\nallow_remote = true\n',
            "metrics.listen",
            "neither an IP address nor a host name",
        ),
    ],
)
def test_bad_settings_are_one_line_at_load(
    tmp_path: Path, replace: tuple[str, str], add: str, named: str, problem: str
) -> None:
    line = refused(config(tmp_path, replace, add), "init")
    assert f"rotator.toml: {named}: " in line and problem in line


@pytest.mark.parametrize(
    ("block", "problem"),
    [
        ('algorithms = 5\nformat = "json"', "target mx1: algorithms: a list of rsa"),
        ('format = "json"\ndeliver = ""', "target mx1.deliver: empty"),
        ('format = "json"\nreload = "systemctl \'reload"', "cannot be split as a shell would"),
        ('format = "json"\nreload = ["systemctl", ""]', "list of non-empty strings"),
        ('format = "json"\nkey_group = 5', "target mx1.key_group: 5: give a group name"),
        ('format = "json"\nkey_group = "no-such-group-here"', "is no group on this host"),
    ],
)
def test_bad_target_settings_are_one_line_at_load(tmp_path: Path, block: str, problem: str) -> None:
    add = f'[[targets]]\nname = "mx1"\ndirectory = "mx1"\n{block}\n'
    assert problem in refused(config(tmp_path, add=add), "init")


def test_signer_beside_targets_is_refused_not_ignored(tmp_path: Path) -> None:
    cfg = config(tmp_path, add=target('{ kind = "none" }'))
    cfg.write_text(cfg.read_text() + SIGNER)
    assert "[signer]: ignored beside [[targets]]; remove it" in refused(cfg, "init")


@pytest.mark.parametrize(
    ("database", "problem"),
    [
        ("mysql://rotator@db/rotator", "not a database rotator knows; give a file path (SQLite)"),
        ("postgresql://rotator:s3cret@db/rot ator", "a URL holds no spaces"),
    ],
)
def test_a_database_that_is_neither_a_path_nor_a_postgresql_url_is_refused(
    tmp_path: Path, database: str, problem: str
) -> None:
    replace = ('database = "state/rotator.db"', f'database = "{database}"')
    line = refused(config(tmp_path, replace), "init")
    assert "rotator.toml: database: " in line and problem in line
    assert "s3cret" not in line  # a password is never shown


def test_a_postgresql_database_keeps_its_files_in_the_state_directory(tmp_path: Path) -> None:
    url = "postgresql://rotator:s3cret@/rotator?host=/run/postgresql"
    cfg = config(tmp_path, ('database = "state/rotator.db"', f'database = "{url}"'))
    loaded = load_config(cfg)
    db = loaded.database
    assert (db.path, db.url, db.state_dir) == (None, url, tmp_path)
    assert str(db) == "postgresql://rotator:***@/rotator?host=/run/postgresql"
    assert db.side(".signer-lock") == tmp_path / "rotator.signer-lock"
    assert loaded.audit.key_file == tmp_path / "audit.key"
    assert loaded.audit.anchor == tmp_path / "anchor.log"
    cfg.write_text(f'state_dir = "/var/lib/rotator"\n{cfg.read_text()}')
    moved = load_config(cfg)
    assert moved.database.side(".webhooks") == Path("/var/lib/rotator/rotator.webhooks")
    assert moved.audit.anchor == Path("/var/lib/rotator/anchor.log")


def test_an_sqlite_database_keeps_its_files_beside_it(tmp_path: Path) -> None:
    db = load_config(config(tmp_path)).database
    assert (db.path, db.url, db.state_dir) == (
        tmp_path / "state/rotator.db",
        None,
        tmp_path / "state",
    )
    assert db.side(".signer-lock") == tmp_path / "state/rotator.db.signer-lock"
    assert str(db) == str(tmp_path / "state/rotator.db")


def test_a_database_password_in_a_config_others_can_read_is_refused(tmp_path: Path) -> None:
    url = "postgresql://rotator:s3cret@db.internal/rotator"
    cfg = config(tmp_path, ('database = "state/rotator.db"', f'database = "{url}"'))
    cfg.chmod(0o644)
    line = refused(cfg, "init")
    assert "holds a secret but is readable by others" in line
    assert "move the database password to a passfile" in line and "s3cret" not in line


def test_leadership_defaults_to_cert_managers_times_and_the_host_name(tmp_path: Path) -> None:
    lead = load_config(config(tmp_path)).leadership
    assert (lead.lease, lead.renew, lead.retry) == (60.0, 40.0, 15.0)
    assert lead.node and lead.node == __import__("socket").gethostname()
    short = '[leadership]\nnode = "mx1"\nlease_seconds = 4\nrenew_seconds = 2\nretry_seconds = 1\n'
    lead = load_config(config(tmp_path, add=short)).leadership
    assert (lead.node, lead.lease, lead.renew, lead.retry) == ("mx1", 4.0, 2.0, 1.0)


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ("renew_seconds = 60", "retry_seconds 15 < renew_seconds 60 < lease_seconds 60 must hold"),
        ("retry_seconds = 45", "retry_seconds 45 < renew_seconds 40 < lease_seconds 60 must hold"),
        ('node = "mx 1"', "'mx 1': a node name is letters, digits, dots, hyphens and underscores"),
        ("lease_seconds = 0", "lease_seconds: 0: give a number above 0, up to 3600"),
    ],
)
def test_a_lease_that_could_not_work_is_refused_at_load(
    tmp_path: Path, table: str, problem: str
) -> None:
    line = refused(config(tmp_path, add=f"[leadership]\n{table}\n"), "init")
    assert problem in line, line
