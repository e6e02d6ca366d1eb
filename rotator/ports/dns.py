"""DNS: the primary that takes updates, and the authoritative nameservers probed directly."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..domain.verification import DelegationView, Observation


@dataclass(frozen=True)
class RecordChange:
    """Replace the TXT RRset at `name` with one record `text`, or delete it (text None)."""

    name: str  # absolute owner name, e.g. "nov2026.myesp._domainkey.example.com."
    ttl: int
    text: str | None


class Publisher(Protocol):
    def apply(self, zone: str, changes: Sequence[RecordChange]) -> str:
        """Apply all changes to `zone` (idempotent). Returns the server that accepted them.
        Raises PublishError(reason) if any part was not accepted."""
        ...

    def zone_problem(self, zone: str) -> str | None:
        """None if the primary serves `zone` (an authoritative SOA for exactly that name),
        else what is wrong, to warn about before any UPDATE is refused."""
        ...


class NameserverProbe(Protocol):
    """Every call ends by its `deadline` (a time.monotonic() instant; None: the probe's own
    bound), each query given only the time left: a check of a customer's slow DNS cannot
    hold its thread past its deadline."""

    def observe(self, zone: str, name: str, deadline: float | None = None) -> list[Observation]:
        """Query every address of every authoritative nameserver of `zone` directly (RD=0)
        for the TXT at `name`. Raises ProbeError if the nameserver set cannot be found."""
        ...

    def cname(self, name: str, deadline: float | None = None) -> str | None:
        """The CNAME target of `name` as a resolver sees it (absolute, lower case), or None
        if the answer is that there is none (NXDOMAIN, NODATA). ProbeError when no answer
        came (timeout, SERVFAIL): that proves nothing either way."""
        ...

    def delegation(self, zone: str, deadline: float | None = None) -> DelegationView:
        """Ask the parent zone's authoritative servers (RD=0) which NS they hand out for
        `zone`, and the zone's own NS set. Never raises: problems go in .error."""
        ...
