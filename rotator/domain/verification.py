"""Judging what authoritative nameservers answered against what was published (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .record import keys_match, records_match


@dataclass(frozen=True)
class Observation:
    """What one address of one authoritative nameserver answered for one name (TXT; or
    SOA, for the zone's serial)."""

    nameserver: str  # NS host name, or the configured label
    address: str  # "ip:port" as queried
    rcode: str = "NOERROR"
    authoritative: bool = False
    texts: tuple[str, ...] = ()  # one entry per TXT RR, its strings concatenated
    error: str | None = None  # timeout, network error, malformed answer
    serial: int | None = None  # the SOA's, when asked for SOA


NODATA = "no TXT record at the name (NODATA)"
STALE = "record differs from the published one (old or foreign data)"
# What a server that has not caught up yet answers (authoritatively): these are waited for.
# Anything else (no answer, REFUSED, SERVFAIL, not authoritative) is a failure at once.
PROPAGATING = frozenset({"NXDOMAIN", NODATA, STALE})


def propagating(results: tuple[dict[str, Any], ...]) -> bool:
    """True if every server that disagrees only looks behind: worth waiting for."""
    bad = [r for r in results if not r["ok"]]
    return bool(bad) and all(r["detail"] in PROPAGATING for r in bad)


def judge_one(expected: str, obs: Observation, key_only: bool = False) -> str | None:
    """None if this answer proves the record is served, else why not."""
    if obs.error:
        return obs.error
    if obs.rcode != "NOERROR":
        return obs.rcode
    if not obs.authoritative:
        return "answer is not authoritative (AA=0): lame delegation or wrong server"
    if not obs.texts:
        return NODATA
    if len(obs.texts) > 1:
        return f"{len(obs.texts)} TXT records at the name; verifiers need exactly one"
    if key_only:
        # A customer-published record: its optional tags are the customer's business; the
        # key itself (k=, p=) must be the one we sign with.
        if not keys_match(expected, obs.texts[0]):
            return "the customer's record carries a different public key"
        return None
    if not records_match(expected, obs.texts[0]):
        return STALE
    return None


def judge(
    expected: str, observations: list[Observation], key_only: bool = False
) -> tuple[bool, tuple[dict[str, Any], ...]]:
    """All addresses of all authoritative nameservers must serve exactly `expected`."""
    results = []
    for obs in observations:
        problem = judge_one(expected, obs, key_only)
        results.append(
            {
                "nameserver": obs.nameserver,
                "address": obs.address,
                "ok": problem is None,
                "detail": problem or "match",
            }
        )
    ok = bool(results) and all(r["ok"] for r in results)
    return ok, tuple(results)


def summarize(results: tuple[dict[str, Any], ...]) -> str:
    bad = [f"{r['address']} ({r['nameserver']}): {r['detail']}" for r in results if not r["ok"]]
    if not results:
        return "no authoritative nameserver found"
    if not bad:
        return f"all {len(results)} nameserver addresses match"
    return f"{len(bad)}/{len(results)} nameserver addresses disagree: " + "; ".join(bad)


@dataclass(frozen=True)
class DelegationView:
    """What the parent zone's servers say about an NS-delegated zone."""

    zone: str
    parent: str | None = None  # the parent zone found (e.g. example.com)
    referral: frozenset[str] = frozenset()  # NS names the parent's servers refer to
    served: frozenset[str] = frozenset()  # NS names in the zone's own apex NS RRset
    error: str | None = None


def judge_delegation(view: DelegationView, expected: frozenset[str]) -> str | None:
    """None if the parent delegates the zone to exactly the ESP's nameservers, else what the
    customer still has to do (the text is shown as 'awaiting customer DNS')."""
    want = {n.rstrip(".").lower() for n in (expected or view.served)}
    if view.error:
        return f"awaiting customer DNS: cannot check the delegation of {view.zone}: {view.error}"
    have = {n.rstrip(".").lower() for n in view.referral}
    if not have:
        return (
            f"awaiting customer DNS: {view.parent or 'the parent zone'} does not delegate "
            f"{view.zone} (add NS records: {', '.join(sorted(want))})"
        )
    if have != want:
        return (
            f"awaiting customer DNS: {view.zone} is delegated to {', '.join(sorted(have))}, "
            f"expected {', '.join(sorted(want))}"
        )
    return None
