"""Webhook subscriptions: added, listed, removed and resumed by an operator, folded from
the log's webhook stream (so every reader sees the same ones); and what a delivery says
about an event (the public type names and the JSON body, one table for both)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from urllib.parse import urlsplit

from ..domain import events as ev
from ..domain.errors import InputError, NotFound
from ..domain.events.base import to_json
from ..ports import LogFilter, StoredEvent, StreamReader, WebhookVault
from ..timeutil import iso
from .context import Context

# The public type of each delivered event -> the internal event type; the README's table
# is this one. KeyActivated is two: an identity's first key (previous is None: the
# customer's setup works) and a successor taking over.
PUBLIC_TYPES: dict[str, str] = {
    "identity.active": "KeyActivated",
    "key.rotated": "KeyActivated",
    "customer_dns.broken": "CustomerDnsBroken",
    "customer_dns.restored": "CustomerDnsRestored",
    "drift.detected": "DriftDetected",
    "drift.resolved": "DriftResolved",
    "key.compromised": "KeyCompromised",
    "step.parked": "StepParked",
    "safety.stopped": "SafetyStopped",
    "safety.released": "SafetyReleased",
    "identity.removed": "IdentityRemoved",
}
SUBSCRIPTION_TYPES = ("WebhookSubscribed", "WebhookRemoved", "WebhookParked", "WebhookResumed")
# payload fields a receiver has no use for and that would make a body large
_BULKY = frozenset({"targets", "results", "lagged", "details", "record"})
MAX_URL = 2000


def public_type(event: ev.Event) -> str | None:
    """The public type an event is delivered as, None for an event never delivered."""
    name = type(event).__name__
    if isinstance(event, ev.KeyActivated):
        return "identity.active" if event.previous is None else "key.rotated"
    for public, internal in PUBLIC_TYPES.items():
        if internal == name:
            return public
    return None


def internal_types(types: Iterable[str]) -> tuple[str, ...]:
    """The stored event types to read for these public types."""
    return tuple(sorted({PUBLIC_TYPES[t] for t in types}))


def message_id(subscription: str, position: int) -> str:
    """webhook-id: the same for every attempt and every redelivery of one event to one
    subscription, so that a receiver drops duplicates by it."""
    return f"msg_{subscription}_{position}"


def body(stored: StoredEvent, kind: str) -> bytes:
    """The JSON a receiver gets: {type, timestamp, position, data}."""
    event = stored.event
    data: dict[str, object] = {"event": type(event).__name__}
    for name in ("identity", "domain", "selector", "key_id"):
        value = getattr(event, name, None)
        if value is not None:
            data[name] = value
    data["actor"] = event.actor
    if event.reason:
        data["reason"] = event.reason
    data.update((k, v) for k, v in event.payload().items() if k not in _BULKY)
    if isinstance(event, ev.KeyActivated):
        data["first"] = event.previous is None
    out = {"type": kind, "timestamp": iso(event.at), "position": stored.position, "data": data}
    return json.dumps(to_json(out), sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Subscription:
    id: str
    url: str
    types: tuple[str, ...]
    since: int  # the log position it was added at: events after it are delivered
    parked: str | None = None  # why deliveries stopped, until resumed
    parked_at: int | None = None  # the position whose delivery failed
    parked_since: datetime | None = None  # when it was parked
    removed: bool = False


class Book:
    """The subscriptions, folded from the log's webhook stream as far as it was read."""

    def __init__(self) -> None:
        self.seen = 0
        self.subs: dict[str, Subscription] = {}

    def catch_up(self, reader: StreamReader) -> dict[str, Subscription]:
        for stored in reader.events(LogFilter(types=SUBSCRIPTION_TYPES, after_position=self.seen)):
            self.seen = stored.position
            self.apply(stored)
        return self.subs

    def apply(self, stored: StoredEvent) -> None:
        e = stored.event
        if isinstance(e, ev.WebhookSubscribed):
            self.subs[e.subscription] = Subscription(
                e.subscription, e.url, e.types, stored.position
            )
            return
        sub = self.subs.get(e.subscription) if isinstance(e, ev.WebhookEvent) else None
        if sub is None:
            return
        if isinstance(e, ev.WebhookRemoved):
            self.subs[sub.id] = replace(sub, removed=True)
        elif isinstance(e, ev.WebhookParked):
            self.subs[sub.id] = replace(
                sub, parked=e.error, parked_at=e.position, parked_since=e.at
            )
        elif isinstance(e, ev.WebhookResumed):
            self.subs[sub.id] = replace(sub, parked=None, parked_at=None, parked_since=None)


def check_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > MAX_URL:
        raise InputError(f"{url!r}: give an http:// or https:// URL with a host")
    if not url.isprintable() or " " in url.strip():
        raise InputError(f"{url!r}: a URL has no spaces or control characters")
    return url.strip()


def check_types(types: Sequence[str]) -> tuple[str, ...]:
    unknown = [t for t in types if t not in PUBLIC_TYPES]
    if unknown:
        raise InputError(
            f"unknown event type {unknown[0]!r}; known: {', '.join(sorted(PUBLIC_TYPES))}"
        )
    return tuple(sorted(set(types))) if types else tuple(sorted(PUBLIC_TYPES))


class Webhooks:
    """The operator's use cases. The vault keeps the secrets (None: a read-only App)."""

    def __init__(self, ctx: Context, vault: WebhookVault | None) -> None:
        self.ctx = ctx
        self.vault = vault
        self.book = Book()

    def parked(self) -> list[Subscription]:
        """The subscriptions whose deliveries stopped until an operator resumes them."""
        return [s for s in self.list() if s.parked is not None]

    def list(self, include_removed: bool = False) -> list[Subscription]:
        subs = self.book.catch_up(self.ctx.store).values()
        return [s for s in subs if include_removed or not s.removed]

    def get(self, subscription: str) -> Subscription:
        sub = self.book.catch_up(self.ctx.store).get(subscription)
        if sub is None or sub.removed:
            raise NotFound(f"no webhook {subscription!r}; `rotator webhook list` shows them")
        return sub

    def _vault(self) -> WebhookVault:
        if self.vault is None:  # pragma: no cover - the CLI opens a writer for these
            raise InputError("this command is read-only")
        return self.vault

    def add(
        self, url: str, types: Sequence[str], actor: str, reason: str
    ) -> tuple[Subscription, str]:
        """Subscribe `url`: the new subscription and its secret (shown this once)."""
        url, wanted = check_url(url), check_types(types)
        sub_id = f"whk_{secrets.token_hex(8)}"
        secret = self._vault().new_secret(sub_id)  # first: an event without its secret is worse
        event = ev.WebhookSubscribed(
            at=self.ctx.clock.now(), actor=actor, reason=reason, subscription=sub_id,
            url=url, types=wanted,
        )  # fmt: skip
        self.ctx.recorder.append([event])
        return self.get(sub_id), secret

    def remove(self, subscription: str, actor: str, reason: str) -> None:
        self.get(subscription)
        self.ctx.recorder.append(
            [ev.WebhookRemoved(at=self.ctx.clock.now(), actor=actor, reason=reason,
                               subscription=subscription)]
        )  # fmt: skip
        self._vault().forget(subscription)

    def resume(self, subscription: str, actor: str, reason: str) -> Subscription:
        sub = self.get(subscription)
        if sub.parked is None:
            raise InputError(f"webhook {subscription} is not parked: its deliveries go on")
        self.ctx.recorder.append(
            [ev.WebhookResumed(at=self.ctx.clock.now(), actor=actor, reason=reason,
                               subscription=subscription)]
        )  # fmt: skip
        return self.get(subscription)

    def cursor(self, sub: Subscription) -> int:
        """The position deliveries have reached (acknowledged up to it)."""
        if self.vault is None:
            return sub.since
        return max(sub.since, self.vault.cursor(sub.id) or 0)
