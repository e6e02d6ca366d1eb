"""DNS: the primary that takes updates, and the authoritative nameservers probed directly."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..domain.errors import ProbeError, PublishError
from ..domain.reasons import Reason
from ..domain.verification import DelegationView, Observation


@dataclass(frozen=True)
class RecordChange:
    """Replace the TXT RRset at `name` with one record `text`, or delete it (text None)."""

    name: str  # absolute owner name, e.g. "nov2026.myesp._domainkey.example.com."
    ttl: int
    text: str | None


ZoneChanges = tuple[str, Sequence[RecordChange]]  # a zone and the changes to make in it

# what a backend says when it answered that it will not take a zone's changes (as opposed
# to not answering at all): zone_problem() gives these as its text
SAID_NO = frozenset(
    {Reason.DNS_NOTAUTH, Reason.DNS_REFUSED, Reason.DNS_CREDENTIAL, Reason.DNS_TSIG}
)


class Publisher(Protocol):
    """A DNS backend: whatever puts records on the zone's primary (RFC 2136 UPDATEs, an HTTP
    API, a rebuilt data file). Every change replaces or deletes a whole TXT RRset, so sending
    the same batch again (after a crash before its outcome was recorded) is harmless."""

    def publish(self, batch: Sequence[ZoneChanges]) -> list[str | PublishError]:
        """Apply each zone's changes; one result per zone, in order: what accepted them
        (shown in the audit log), or why not. A backend that rebuilds a file does it once
        for the whole batch. Never raises for a zone's failure."""
        ...

    def zone_problem(self, zone: str) -> str | None:
        """None if this backend serves `zone`, else what is wrong (one line), to say before
        any change is refused. Raises PublishError when the backend could not be asked (no
        answer in time, a network error, a failure of its own): that proves nothing either
        way."""
        ...

    def serves(self, zone: str) -> bool:
        """Whether a backend is configured for `zone` (the config alone, no request)."""
        ...

    def in_rounds(self, zone: str) -> bool:
        """Whether a big batch of changes to `zone` reaches the primary as several changes
        of the zone (UPDATEs of at most 64 KiB, each with its own serial and NOTIFY), which
        secondaries take in rounds of transfers anyway: then the first few of many new
        keys are sent on their own, ahead of the rest, to start the first round sooner.
        False where a batch is one change (an API call, a rebuilt file): a batch sent
        ahead would add a round."""
        ...


def observe_each(
    probe: NameserverProbe, queries: Sequence[tuple[str, str]], deadline: float | None = None
) -> list[list[Observation] | ProbeError]:
    """observe_many() as one observe() after another (for probes that query nothing)."""
    out: list[list[Observation] | ProbeError] = []
    for zone, name in queries:
        try:
            out.append(probe.observe(zone, name, deadline))
        except ProbeError as exc:
            out.append(exc)
    return out


def apply_zone(publisher: Publisher, zone: str, changes: Sequence[RecordChange]) -> str:
    """One zone's changes through `publisher.publish`: what accepted them, or PublishError."""
    (result,) = publisher.publish([(zone, changes)])
    if isinstance(result, PublishError):
        raise result
    return result


class NameserverProbe(Protocol):
    """Every call ends by its `deadline` (a time.monotonic() instant; None: the probe's own
    bound), each query given only the time left: a check of a customer's slow DNS cannot
    hold its thread past its deadline."""

    def observe(self, zone: str, name: str, deadline: float | None = None) -> list[Observation]:
        """Query every address of every authoritative nameserver of `zone` directly (RD=0)
        for the TXT at `name`. Raises ProbeError if the nameserver set cannot be found."""
        ...

    def observe_many(
        self, queries: Sequence[tuple[str, str]], deadline: float | None = None
    ) -> list[list[Observation] | ProbeError]:
        """observe() for every (zone, name) of `queries`, concurrently, each ending by
        `deadline` (None: a bound of the probe's own, as for one observe() per batch it
        sends): one result per query, in order, the ProbeError instead of raising it.
        `observe_each` is the plain implementation."""
        ...

    def serials(
        self, zones: Sequence[str], deadline: float | None = None
    ) -> dict[str, list[int | None]]:
        """Each zone's SOA serial on every address of every authoritative nameserver of the
        zone (None where none came back), ending by `deadline` as observe_many() does."""
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
