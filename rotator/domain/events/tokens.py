"""The API tokens' streams, one per token name: created with its scopes, revoked. The
secret itself is never recorded, only its SHA-256."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import Event


def token_stream(name: str) -> str:
    return f"token:{name}"


@dataclass(frozen=True, kw_only=True)
class TokenEvent(Event):
    name: str

    @property
    def stream_id(self) -> str:
        return token_stream(self.name)


@dataclass(frozen=True, kw_only=True)
class TokenCreated(TokenEvent):
    """An API token: whoever shows the secret whose SHA-256 is token_hash acts as `name`
    with these scopes. A revoked name may be created again (a new version of its stream)."""

    opens_stream: ClassVar[bool] = True

    scopes: tuple[str, ...]
    token_hash: str


@dataclass(frozen=True, kw_only=True)
class TokenRevoked(TokenEvent):
    """The token stops working at once."""
