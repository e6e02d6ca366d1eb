"""One contract every DNS backend passes against its real servers, through the config and
the factory the daemon uses: publish, replace, revoke to `p=`, delete, many records in one
batch, the same batch sent again (a crash before its outcome was recorded), a refused
credential, and a zone its servers do not serve."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest

from rotator.adapters.dns.factory import build_publisher
from rotator.adapters.dns.router import ZoneRouter
from rotator.config.settings import load_config
from rotator.domain.errors import PublishError
from rotator.domain.reasons import Reason
from rotator.ports import RecordChange

from .servers import BackendServers, served, wait_served

pytestmark = pytest.mark.integration

POLICIES = Path(__file__).resolve().parents[3] / "policies"
# An RSA-2048 record is ~410 octets: more than one 255-octet character-string.
RSA = "v=DKIM1; k=rsa; p=" + base64.b64encode(secrets.token_bytes(294)).decode()
ED = "v=DKIM1; k=ed25519; p=" + base64.b64encode(secrets.token_bytes(32)).decode()
REVOKED = "v=DKIM1; p="


def backend_config(workdir: Path, servers: BackendServers, wrong: bool = False) -> Path:
    """A rotator.toml whose only DNS is the backend under test."""
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "rotator.toml"
    cfg.write_text(
        f'database = "rotator.db"\nkey_dir = "keys"\npolicy_dir = "{POLICIES}"\n'
        f"tick_seconds = 0.5\n\n[dns]\ntimeout = 2.0\n\n"
        f"{servers.backend_table(workdir, wrong_credential=wrong)}\n"
        '[signer]\nkey_table = "opendkim/KeyTable"\nsigning_table = "opendkim/SigningTable"\n'
        f'reload = ["true"]\n'
    )
    cfg.chmod(0o600)
    return cfg


def publisher(servers: BackendServers, workdir: Path, wrong: bool = False) -> ZoneRouter:
    return build_publisher(load_config(backend_config(workdir, servers, wrong)).dns)


def name(servers: BackendServers, selector: str = "s1") -> str:
    return f"{selector}.myesp._domainkey.{servers.zone}."


def ok(results: list[str | PublishError]) -> list[str]:
    assert all(isinstance(r, str) for r in results), results
    return [str(r) for r in results]


def test_publish_replace_revoke_delete(servers: BackendServers, tmp_path: Path) -> None:
    pub = publisher(servers, tmp_path)
    assert pub.zone_problem(servers.zone) is None
    rec = name(servers)
    (where,) = ok(pub.publish([(servers.zone, [RecordChange(rec, 300, RSA)])]))
    assert where  # what accepted it, for the audit log
    wait_served(servers, rec, [RSA])
    ok(pub.publish([(servers.zone, [RecordChange(rec, 300, ED)])]))
    wait_served(servers, rec, [ED])  # replaced, not added beside
    ok(pub.publish([(servers.zone, [RecordChange(rec, 300, REVOKED)])]))
    wait_served(servers, rec, [REVOKED])
    ok(pub.publish([(servers.zone, [RecordChange(rec, 300, None)])]))
    wait_served(servers, rec, [])
    assert all(rcode == "NXDOMAIN" for rcode, _ in served(servers, rec).values())


def test_many_records_in_one_batch(servers: BackendServers, tmp_path: Path) -> None:
    pub = publisher(servers, tmp_path)
    changes = [RecordChange(name(servers, f"m{i}"), 300, RSA) for i in range(300)]
    ok(pub.publish([(servers.zone, changes)]))
    for i in (0, 149, 299):
        wait_served(servers, name(servers, f"m{i}"), [RSA])


def test_a_batch_sent_again_changes_nothing(servers: BackendServers, tmp_path: Path) -> None:
    """A crash between the request and its recording: the restarted daemon sends the same
    changes again, and the outcome is the same as after one."""
    pub = publisher(servers, tmp_path)
    batch = [
        (servers.zone, [RecordChange(name(servers, "a"), 300, RSA)]),
    ]
    ok(pub.publish(batch))
    ok(publisher(servers, tmp_path / "restarted").publish(batch))
    wait_served(servers, name(servers, "a"), [RSA])
    gone = [(servers.zone, [RecordChange(name(servers, "a"), 300, None)])]
    ok(pub.publish(gone))
    ok(pub.publish(gone))  # deleting what is gone is no error
    wait_served(servers, name(servers, "a"), [])


def test_a_refused_credential_is_a_clear_failure(servers: BackendServers, tmp_path: Path) -> None:
    pub = publisher(servers, tmp_path, wrong=True)
    (result,) = pub.publish([(servers.zone, [RecordChange(name(servers, "x"), 300, RSA)])])
    assert isinstance(result, PublishError), result
    assert result.code in (Reason.DNS_CREDENTIAL, Reason.DNS_TSIG), result.code
    assert "\n" not in result.reason
    wait_served(servers, name(servers, "x"), [], timeout=1)


def test_a_zone_the_servers_do_not_serve(servers: BackendServers, tmp_path: Path) -> None:
    pub = publisher(servers, tmp_path)
    problem = pub.zone_problem(servers.unserved_zone)
    assert problem is not None and servers.unserved_zone in problem
    rec = f"s1.myesp._domainkey.{servers.unserved_zone}."
    (result,) = pub.publish([(servers.unserved_zone, [RecordChange(rec, 300, RSA)])])
    assert isinstance(result, PublishError) and "\n" not in result.reason
    # and a zone given to no backend at all
    assert not pub.serves("nowhere.example")
    (result,) = pub.publish([("nowhere.example", [])])
    assert isinstance(result, PublishError) and result.code == Reason.DNS_NO_BACKEND
