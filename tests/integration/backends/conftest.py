"""Every DNS backend's real servers, one parameter each: the contract and lifecycle tests
run against all of them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .bind_servers import start_bind
from .nsd_servers import start_nsd
from .pdns_servers import start_lexicon_pdns, start_pdns
from .route53_servers import start_route53
from .servers import BackendServers, Start
from .tinydns_servers import start_tinydns

STARTERS: dict[str, Start] = {
    "rfc2136": start_bind,
    "powerdns": start_pdns,
    "lexicon": start_lexicon_pdns,
    "route53": start_route53,
    "tinydns": start_tinydns,
    "zonefile": start_nsd,
}


@pytest.fixture(params=sorted(STARTERS))
def servers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackendServers]:
    started = STARTERS[request.param](tmp_path / "servers")
    try:
        yield started
    finally:
        started.stop()
