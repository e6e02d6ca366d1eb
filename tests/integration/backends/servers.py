"""What the backend contract and lifecycle tests need of a backend's real servers: a zone
they serve, the `[[dns.backends]]` table that reaches them, and two authoritative addresses
to query directly (a primary and a secondary fed by it, or two servers each given a copy)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from tests.integration.rotatorenv import query_txt


class BackendServers(Protocol):
    kind: str
    zone: str  # served by the servers, given to the backend
    unserved_zone: str  # given to the backend too, but not served by its servers

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Every authoritative address the records must reach."""
        ...

    def server(self, which: str) -> tuple[str, int]:
        """The address of "primary" or "secondary"."""
        ...

    def backend_table(self, workdir: Path, wrong_credential: bool = False) -> str:
        """The [[dns.backends]] TOML table (secret files written into workdir), naming
        zone and unserved_zone and the two addresses as `nameservers`."""
        ...

    def stop(self) -> None: ...


Start = Callable[[Path], BackendServers]


def served(servers: BackendServers, name: str) -> dict[str, tuple[str, list[str]]]:
    """(rcode, texts) of every address, each asked directly."""
    out = {}
    for ip, port in servers.addresses:
        rcode, aa, texts = query_txt(ip, port, name)
        assert aa or rcode == "REFUSED", f"{ip}:{port} answers without AA"
        out[f"{ip}:{port}"] = (rcode, texts)
    return out


def wait_served(
    servers: BackendServers, name: str, texts: list[str], timeout: float = 20.0
) -> None:
    """Every address serves exactly `texts` at `name` ([]: nothing) within `timeout`."""
    until = time.monotonic() + timeout
    while True:
        seen = served(servers, name)
        if all(t == texts for _, t in seen.values()):
            return
        if time.monotonic() > until:
            raise AssertionError(f"{name}: wanted {texts} everywhere, saw {seen}")
        time.sleep(0.2)
