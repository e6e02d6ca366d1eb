"""kind = "lexicon" without a provider's server: the options file, the TXT form each
provider takes, replace as list/delete/create (nothing sent when the record is there
already), a hung provider bounded by the timeout, failures as one line without a
secret, and no request outside while lexicon is set up. tests/integration/backends run
it against a real PowerDNS through lexicon's provider."""

from __future__ import annotations

import os
import socket
import time
from argparse import ArgumentParser
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from lexicon.interfaces import Provider

from rotator.adapters.dns.lexicon import LexiconPublisher, plain, provider_class, txt_for
from rotator.config.backends.lexicon import provider_options
from rotator.domain.errors import ConfigError, PublishError
from rotator.domain.reasons import Reason
from rotator.ports import SAID_NO, RecordChange

from .clirun import refused
from .test_dns_backends import backends_only

LONG = "v=DKIM1; k=rsa; p=" + "B" * 392


def write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "options"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_options_as_toml_or_as_lexicon_environment_lines(tmp_path: Path) -> None:
    toml = write(tmp_path, 'auth_token = "t0ken"\npdns_server = "http://127.0.0.1:8081"\n')
    assert provider_options(toml, "powerdns", "opts") == {
        "auth_token": "t0ken",
        "pdns_server": "http://127.0.0.1:8081",
    }
    env = write(
        tmp_path,
        "# lexicon's variables\nexport LEXICON_POWERDNS_AUTH_TOKEN='t0ken'\n\n"
        'PDNS_SERVER="http://127.0.0.1:8081"\nauth_username=me\n',
    )
    assert provider_options(env, "powerdns", "opts") == {
        "auth_token": "t0ken",
        "pdns_server": "http://127.0.0.1:8081",
        "auth_username": "me",
    }


def test_a_bad_options_file_is_one_line_without_its_values(tmp_path: Path) -> None:
    bad = write(tmp_path, "auth_token = 'ok'\nthe-secret-value\n")
    with pytest.raises(ConfigError) as exc:
        provider_options(bad, "gandi", "backend g: the lexicon options")
    assert "line 2 is neither TOML nor KEY=value" in str(exc.value)
    assert "the-secret-value" not in str(exc.value)
    nested = write(tmp_path, "[gandi]\nauth_token = 'x'\n")
    with pytest.raises(ConfigError, match="gandi: give a string or a number, not a table"):
        provider_options(nested, "gandi", "opts")
    loose = write(tmp_path, "auth_token = 'x'\n", mode=0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        provider_options(loose, "gandi", "opts")


def test_each_provider_gets_long_records_in_its_form() -> None:
    quoted = txt_for("quoted", LONG)
    assert quoted == f'"{LONG[:255]}" "{LONG[255:]}"'
    assert txt_for("inner", LONG) == quoted[1:-1]
    assert txt_for("whole", LONG) == LONG
    for form in ("quoted", "inner", "whole"):
        assert plain(txt_for(form, LONG)) == LONG  # what list_records gives back compares
    auto = {p: LexiconPublisher(p, Fake, {}).form for p in ("powerdns", "route53", "gandi")}
    assert auto == {"powerdns": "quoted", "route53": "inner", "gandi": "whole"}
    assert LexiconPublisher("powerdns", Fake, {}, txt_format="whole").form == "whole"


class Fake(Provider):
    """lexicon's Provider interface over a dict: (name -> TXT contents), and the calls."""

    zones: ClassVar[dict[str, dict[str, list[str]]]] = {}
    calls: ClassVar[list[str]] = []
    hang = 0.0
    fail: ClassVar[BaseException | None] = None

    @staticmethod
    def get_nameservers() -> list[str]:
        return []

    @staticmethod
    def configure_parser(parser: ArgumentParser) -> None:
        pass

    def authenticate(self) -> None:
        if Fake.fail is not None:
            raise Fake.fail
        if self.domain not in Fake.zones:
            raise Exception(f"zone {self.domain} not found")

    def list_records(
        self, rtype: str | None = None, name: str | None = None, content: str | None = None
    ) -> list[dict[str, Any]]:
        time.sleep(Fake.hang)
        Fake.calls.append(f"list {name}")
        return [{"content": c} for c in Fake.zones[self.domain].get(str(name), [])]

    def delete_record(
        self,
        identifier: str | None = None,
        rtype: str | None = None,
        name: str | None = None,
        content: str | None = None,
    ) -> bool:
        Fake.calls.append(f"delete {name}")
        Fake.zones[self.domain].pop(str(name), None)
        return True

    def create_record(self, rtype: str, name: str, content: str) -> bool:
        Fake.calls.append(f"create {name} {self._get_lexicon_option('ttl')}")
        Fake.zones[self.domain].setdefault(name, []).append(content)
        return True

    def update_record(
        self,
        identifier: str | None = None,
        rtype: str | None = None,
        name: str | None = None,
        content: str | None = None,
    ) -> bool:
        raise AssertionError("rotator replaces by delete and create")


@pytest.fixture
def fake() -> Iterator[type[Fake]]:
    Fake.zones = {"zone.test": {}}
    Fake.calls = []
    Fake.hang = 0.0
    Fake.fail = None
    yield Fake


def test_replace_is_list_delete_create_and_a_batch_sent_again_sends_nothing(
    fake: type[Fake],
) -> None:
    pub = LexiconPublisher("powerdns", fake, {"auth_token": "t0ken"})
    batch = [("zone.test", [RecordChange("a.zone.test.", 300, LONG)])]
    assert pub.publish(batch) == ["lexicon powerdns"]
    assert fake.zones["zone.test"]["a.zone.test"] == [txt_for("quoted", LONG)]
    assert fake.calls == ["list a.zone.test", "create a.zone.test 300"]
    fake.calls.clear()
    assert pub.publish(batch) == ["lexicon powerdns"]
    assert fake.calls == ["list a.zone.test"]  # there already: nothing changed
    fake.calls.clear()
    revoke = [RecordChange("a.zone.test.", 60, "v=DKIM1; p=")]
    pub.publish([("zone.test", revoke)])
    assert fake.calls == ["list a.zone.test", "delete a.zone.test", "create a.zone.test 60"]
    fake.calls.clear()
    gone = [("zone.test", [RecordChange("a.zone.test.", 60, None)])]
    pub.publish(gone)
    pub.publish(gone)  # deleting what is gone is no error, and sends no delete
    assert fake.calls == ["list a.zone.test", "delete a.zone.test", "list a.zone.test"]


def test_a_hung_provider_fails_within_the_timeout(fake: type[Fake]) -> None:
    fake.hang = 5.0
    pub = LexiconPublisher("gandi", fake, {}, timeout=0.3)
    started = time.monotonic()
    (result,) = pub.publish([("zone.test", [RecordChange("a.zone.test.", 60, "x")])])
    assert time.monotonic() - started < 2
    assert isinstance(result, PublishError) and result.code == Reason.DNS_TIMEOUT
    assert result.reason == "timeout after 0.3s waiting for lexicon gandi on zone zone.test"


class Response:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


class HTTPError(OSError):
    def __init__(self, text: str, status: int) -> None:
        super().__init__(text)
        self.response = Response(status)


@pytest.mark.parametrize(
    ("error", "code", "reason"),
    [
        (
            HTTPError("401 Client Error: for url: http://api.test/z?key=t0ken-value", 401),
            Reason.DNS_CREDENTIAL,
            "lexicon gandi refused the credentials (HTTP 401) for zone zone.test: "
            "check credentials_file",
        ),
        (
            HTTPError("404 Client Error", 404),
            Reason.DNS_NOTAUTH,
            "lexicon gandi has no zone zone.test (HTTP 404): create it there, or give the "
            "zone to another backend",
        ),
        (
            OSError("Max retries exceeded ([Errno 111] Connection refused)"),
            Reason.DNS_UPDATE_FAILED,
            "connection refused by lexicon gandi's API (zone zone.test)",
        ),
        (
            ValueError("bad answer\nfor t0ken-value at http://api.test/x?sig=abc"),
            Reason.DNS_UPDATE_FAILED,
            "lexicon gandi failed on zone zone.test: ValueError: bad answer for *** at "
            "http://api.test/x?...",
        ),
    ],
)
def test_failures_are_one_line_without_secrets(
    fake: type[Fake], error: BaseException, code: Reason, reason: str
) -> None:
    fake.fail = error
    pub = LexiconPublisher("gandi", fake, {"auth_token": "t0ken-value"})
    (result,) = pub.publish([("zone.test", [RecordChange("a.zone.test.", 60, "x")])])
    assert isinstance(result, PublishError)
    assert (result.code, result.reason) == (code, reason)
    if code in SAID_NO:  # the provider said no: that is the zone's problem
        assert pub.zone_problem("zone.test") == reason
    else:  # it could not be asked
        with pytest.raises(PublishError) as err:
            pub.zone_problem("zone.test")
        assert err.value.reason == reason


def test_setting_lexicon_up_asks_nothing_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    """lexicon's Client runs tldextract, which would fetch the public suffix list."""
    attempts: list[str] = []
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def getaddrinfo(host: Any, *args: Any, **kw: Any) -> Any:
        attempts.append(f"lookup {host}")
        return real_getaddrinfo(host, *args, **kw)

    def connect(self: socket.socket, address: Any) -> None:
        attempts.append(f"connect {address}")
        real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    before = dict(os.environ)
    assert provider_class("powerdns").__module__.endswith("powerdns")
    assert attempts == []
    assert dict(os.environ) == before  # the offline settings were only for that call


def test_a_provider_lexicon_lacks_is_refused_at_start(tmp_path: Path) -> None:
    table = (
        '[[dns.backends]]\nname = "lx"\nkind = "lexicon"\nprovider = "nosuchdns"\n'
        'zones = ["dkim.esp.test"]\ncredentials_file = "lx.toml"\n'
    )
    options = write(tmp_path, 'auth_token = "x"\n')
    options.rename(tmp_path / "lx.toml")
    line = refused(backends_only(tmp_path, table), "init")
    assert "lexicon provider 'nosuchdns': This provider (nosuchdns) is not supported" in line
    bad = table.replace('provider = "nosuchdns"', 'provider = "Cloud Flare"')
    assert "backend lx: provider: give the name of a dns-lexicon provider" in refused(
        backends_only(tmp_path, bad), "init"
    )
    assert "backend lx: txt_format: 'split' is not one" in refused(
        backends_only(tmp_path, table + 'txt_format = "split"\n'), "init"
    )
