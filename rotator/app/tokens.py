"""API tokens: created with scopes (the secret is shown once, its SHA-256 recorded),
listed, revoked. The table a request is checked against is the fold of the token events,
caught up from the log position last seen (one indexed query): a token revoked by a
command in another process stops working at the next request."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from dataclasses import dataclass

from ..domain import events as ev
from ..domain.errors import InputError, NotFound
from ..ports import LogFilter
from .context import Context

SCOPES = ("read", "provision", "rotate", "emergency", "admin")
TOKEN_TYPES = ("TokenCreated", "TokenRevoked")
PREFIX = "rtr_"  # makes a leaked token recognisable to secret scanners
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Token:
    name: str
    scopes: tuple[str, ...]
    token_hash: str
    created_by: str
    position: int  # of its TokenCreated

    def allows(self, scope: str) -> bool:
        """admin holds every scope."""
        return scope in self.scopes or "admin" in self.scopes


class Tokens:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._seen = 0
        self._by_name: dict[str, Token] = {}
        self._by_hash: dict[str, Token] = {}
        self._versions: dict[str, int] = {}
        self._lock = threading.Lock()  # the API checks tokens from its worker threads

    def _catch_up(self) -> None:
        flt = LogFilter(types=TOKEN_TYPES, after_position=self._seen)
        for stored in self.ctx.store.events(flt):
            self._seen = stored.position
            event = stored.event
            assert isinstance(event, ev.TokenEvent)
            self._versions[event.name] = stored.version
            old = self._by_name.pop(event.name, None)
            if old is not None:
                self._by_hash.pop(old.token_hash, None)
            if isinstance(event, ev.TokenCreated):
                token = Token(
                    event.name, event.scopes, event.token_hash, event.actor, stored.position
                )
                self._by_name[event.name] = self._by_hash[event.token_hash] = token

    def list(self) -> list[Token]:
        with self._lock:
            self._catch_up()
            return sorted(self._by_name.values(), key=lambda t: t.name)

    def verify(self, secret: str) -> Token | None:
        """The live token whose secret this is, or None."""
        digest = token_hash(secret)
        with self._lock:
            self._catch_up()
            token = self._by_hash.get(digest)
        # the dict lookup found it by its hash; compare in constant time all the same
        if token is None or not hmac.compare_digest(token.token_hash, digest):
            return None
        return token

    def create(
        self, name: str, scopes: tuple[str, ...], actor: str, reason: str = ""
    ) -> tuple[Token, str]:
        """(the token, its secret): the secret exists nowhere else afterwards."""
        if not _NAME.fullmatch(name):
            raise InputError(
                f"token name {name!r}: use lower-case letters, digits, '.', '_' and '-' "
                "(up to 63), e.g. panel-prod"
            )
        if not scopes:
            raise InputError(f"give at least one --scope: {', '.join(SCOPES)}")
        for scope in scopes:
            if scope not in SCOPES:
                raise InputError(f"unknown scope {scope!r}; use one of {', '.join(SCOPES)}")
        secret = PREFIX + secrets.token_urlsafe(32)
        with self._lock:
            self._catch_up()
            if name in self._by_name:
                raise InputError(
                    f"token {name} exists; revoke it first (`rotator token revoke {name}`)"
                )
            event = ev.TokenCreated(
                at=self.ctx.clock.now(),
                actor=actor,
                reason=reason,
                name=name,
                scopes=tuple(dict.fromkeys(scopes)),
                token_hash=token_hash(secret),
            )
            self._append(event)
            return self._by_name[name], secret

    def revoke(self, name: str, actor: str, reason: str = "") -> Token:
        with self._lock:
            self._catch_up()
            token = self._by_name.get(name)
            if token is None:
                raise NotFound(f"no token {name}; `rotator token list` shows the live ones")
            now = self.ctx.clock.now()
            self._append(ev.TokenRevoked(at=now, actor=actor, reason=reason, name=name))
            return token

    def _append(self, event: ev.TokenEvent) -> None:
        # the version this decision was read at: a concurrent create or revoke of the same
        # name fails with ConcurrencyError instead of both landing
        expected = {event.stream_id: self._versions.get(event.name, 0)}
        self.ctx.recorder.append([event], versions=expected)
        self._catch_up()
