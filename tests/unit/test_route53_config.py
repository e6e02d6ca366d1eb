"""kind = "route53" in rotator.toml: its settings refused in one line at load, and the
credentials file (INI as ~/.aws/credentials, or TOML) read with the secret file's rules."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rotator.adapters.dns.route53 import from_config
from rotator.config.backends.route53 import AwsKeys, Route53Config, read_credentials
from rotator.domain.errors import ConfigError

from .clirun import refused
from .test_dns_backends import backends_only

TABLE = """
[[dns.backends]]
name = "r53"
kind = "route53"
zones = ["dkim.esp.test"]
endpoint_url = "http://127.0.0.1:1"
credentials_file = "aws.credentials"
timeout = 1
"""


def with_line(line: str, table: str = TABLE) -> str:
    return table + line + "\n"


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        (
            with_line('hosted_zone_id = "Z0123"', TABLE.replace('"]', '", "other.test"]')),
            "backend r53: hosted_zone_id: hosted_zone_id names one hosted zone: give one zone",
        ),
        (with_line('hosted_zone_id = "my zone"'), "'my zone' is not a hosted zone id"),
        (with_line('region = "useast1"'), "'useast1' is not an AWS region"),
        (
            TABLE.replace("http://127.0.0.1:1", "http://route53.example.com"),
            "plain http leaves loopback; use https://",
        ),
        (TABLE.replace("http://127.0.0.1:1", "ftp://127.0.0.1"), "needs http:// or https://"),
        (with_line('wait_insync = "yes"'), "wait_insync: must be true or false"),
        (with_line("insync_timeout = 0"), "insync_timeout: 0: give a number above 0"),
        (with_line('zone_id = "Z1"'), "backend r53: unknown setting 'zone_id'"),
    ],
)
def test_bad_route53_settings_are_one_line_at_load(
    tmp_path: Path, table: str, problem: str
) -> None:
    line = refused(backends_only(tmp_path, table), "init")
    assert problem in line, line


def test_init_says_when_route53_cannot_be_reached(tmp_path: Path) -> None:
    cfg = backends_only(tmp_path, TABLE)
    creds = tmp_path / "aws.credentials"
    creds.write_text("[default]\naws_access_key_id = AKIAFAKE\naws_secret_access_key = s\n")
    creds.chmod(0o600)
    line = refused(cfg, "init")
    assert "DNS backend r53: cannot reach Route 53 (http://127.0.0.1:1) for zone dkim.esp.test" in (
        line
    )
    creds.chmod(0o644)
    assert "readable by others" in refused(cfg, "init")


@pytest.mark.parametrize(
    "text",
    [
        "[default]\naws_access_key_id = AKIA1\naws_secret_access_key = s3cr3t\n",
        "[rotator]\naws_access_key_id=AKIA1\naws_secret_access_key=s3cr3t\n",
        "aws_access_key_id = AKIA1\naws_secret_access_key = s3cr3t\n",  # INI, no profile
        'aws_access_key_id = "AKIA1"\naws_secret_access_key = "s3cr3t"\n',  # TOML
        '[default]\naws_access_key_id = "AKIA1"\naws_secret_access_key = "s3cr3t"\n',
    ],
)
def test_the_credentials_file_reads_as_ini_or_toml(tmp_path: Path, text: str) -> None:
    path = tmp_path / "creds"
    path.write_text(text)
    path.chmod(0o600)
    keys = read_credentials(path, "the AWS credentials")
    assert keys == AwsKeys("AKIA1", "s3cr3t")
    assert "s3cr3t" not in repr(keys)


def test_a_credentials_file_without_both_keys_says_what_to_write(tmp_path: Path) -> None:
    path = tmp_path / "creds"
    path.write_text("[default]\naws_access_key_id = AKIA1\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="has no aws_access_key_id and aws_secret_access_key"):
        read_credentials(path, "the AWS credentials")
    path.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        read_credentials(path, "the AWS credentials")


def test_without_boto3_the_kind_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("rotator.adapters.dns.route53.publisher", "rotator.adapters.dns.route53.calls"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    for module in ("boto3", "botocore", "botocore.exceptions", "botocore.config"):
        monkeypatch.setitem(sys.modules, module, None)
    cfg = Route53Config("r53", "route53", ("dkim.esp.test",), (), 1.0)
    with pytest.raises(ConfigError, match=r"kind route53 needs boto3.*rotator\[route53\]"):
        from_config(cfg)
