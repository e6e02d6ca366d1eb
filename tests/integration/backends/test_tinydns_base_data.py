"""kind = "tinydns" against its two real servers: a name rotator publishes or owns that the
operator's base_data holds too is refused (tinydns would serve both records), nothing is
built or installed meanwhile, and the batch goes out once the line is gone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rotator.domain.errors import PublishError
from rotator.domain.reasons import Reason
from rotator.ports import RecordChange

from .servers import wait_served
from .test_contract import ED, RSA, name, ok, publisher
from .tinydns_servers import TinydnsServers, start_tinydns

pytestmark = pytest.mark.integration


@pytest.fixture
def tinydns(tmp_path: Path) -> Iterator[TinydnsServers]:
    started = start_tinydns(tmp_path / "servers")
    try:
        yield started
    finally:
        started.stop()


def installed(servers: TinydnsServers) -> list[bytes]:
    return [(root / "data.cdb").read_bytes() for root in servers.roots]


def test_tinydns_refuses_a_name_base_data_holds_too(
    tinydns: TinydnsServers, tmp_path: Path
) -> None:
    pub = publisher(tinydns, tmp_path)
    zone, base = tinydns.zone, tinydns.base_data
    s1, s2, s3 = (name(tinydns, s) for s in ("s1", "s2", "s3"))
    ok(pub.publish([(zone, [RecordChange(s1, 300, RSA)])]))
    wait_served(tinydns, s1, [RSA])
    operator = base.read_text()
    before = installed(tinydns), (tinydns.build / "rotator.data").read_bytes()

    # a name rotator owns, written by hand in another spelling: no batch is built
    base.write_text(operator + f"'S1.MyEsp.\\137domainkey.{zone.upper()}.:by hand:60\n")
    (result,) = pub.publish([(zone, [RecordChange(s2, 300, ED)])])
    assert isinstance(result, PublishError), result
    assert result.code == Reason.DNS_UPDATE_FAILED
    assert result.reason == (
        f"{s1.rstrip('.')} is in base_data {base} (line 6): rotator owns that name; "
        "remove its lines from base_data"
    )
    assert (installed(tinydns), (tinydns.build / "rotator.data").read_bytes()) == before
    wait_served(tinydns, s1, [RSA], timeout=1)
    wait_served(tinydns, s2, [], timeout=1)

    # a name the batch publishes
    base.write_text(operator + f"+{s3.rstrip('.')}:192.0.2.9:60\n")
    (result,) = pub.publish([(zone, [RecordChange(s3, 300, RSA)])])
    assert isinstance(result, PublishError) and result.code == Reason.DNS_UPDATE_FAILED
    assert result.reason.startswith(f"{s3.rstrip('.')} is in base_data {base} (line 6)")
    assert installed(tinydns) == before[0]
    wait_served(tinydns, s3, [], timeout=1)

    # the line gone, the same batch goes out; other names in base_data are the operator's
    base.write_text(operator + f"'note.{zone}:by hand:60\n")
    ok(pub.publish([(zone, [RecordChange(s2, 300, ED), RecordChange(s3, 300, RSA)])]))
    for record, texts in ((s1, [RSA]), (s2, [ED]), (s3, [RSA]), (f"note.{zone}.", ["by hand"])):
        wait_served(tinydns, record, texts)
