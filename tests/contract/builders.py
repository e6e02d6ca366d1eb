"""Events to append in the store tests: an identity, a key and its steps at T0 + t."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rotator.domain import events as ev

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def added(domain: str, t: float = 0, zone: str | None = None) -> ev.IdentityAdded:
    return ev.IdentityAdded(
        at=at(t),
        actor="alice",
        reason=f"onboard {domain}",
        identity=domain,
        domain=domain,
        zone=zone or domain,
        policy="demo",
        signing_pattern=f"*@{domain}",
    )


def key_ids(key_id: str, domain: str, t: float, selector: str = "s1.myesp") -> dict[str, Any]:
    return {
        "at": at(t),
        "key_id": key_id,
        "identity": domain,
        "domain": domain,
        "selector": selector,
    }


def generated(
    key_id: str, domain: str, t: float = 0, selector: str = "s1.myesp"
) -> ev.KeyGenerated:
    return ev.KeyGenerated(
        **key_ids(key_id, domain, t, selector),
        policy="demo",
        algorithm="ed25519",
        bits=256,
        fingerprint="cd" * 32,
        zone=domain,
        record_name=f"{selector}._domainkey.{domain}.",
        record="v=DKIM1; k=ed25519; p=QUJD",
        ttl=60,
    )


def activated(key_id: str, domain: str, t: float, selector: str = "s1.myesp") -> list[ev.Event]:
    """A generated key's way to active: published, verified, activated at t."""
    ids = key_ids(key_id, domain, t, selector)
    return [
        ev.KeyPublished(**ids, server="ns"),
        ev.KeyVerified(**ids, results=(), activate_at=at(t)),
        ev.KeyActivated(**ids, rotate_at=at(t + 10_000)),
    ]


def five_events(store: Any) -> None:
    store.append([added("a.com", 0)], {"identity:a.com": 0})
    store.append([added("b.com", 1, zone="zone-b.net")], {"identity:b.com": 0})
    store.append([added("c.com", 2)], {"identity:c.com": 0})
    store.append([generated("k1", "a.com", 3)], {"key:k1": 0})
    store.append([ev.KeyPublished(**key_ids("k1", "a.com", 4), server="ns")], {"key:k1": 1})
