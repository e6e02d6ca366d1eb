"""What webhook delivery talks to: the HTTP sender (which signs) and the vault beside the
database that keeps each subscription's secret and delivery cursor (neither is an event:
log readers hold no secrets, and a cursor moves on every delivery)."""

from __future__ import annotations

from typing import Protocol

from ..domain.errors import ExternalError


class DeliveryError(ExternalError):
    """A receiver did not acknowledge a delivery (no 2xx, timeout, refused connection)."""


class SecretUnreadable(ExternalError):
    """A subscription's secret file is missing, unreadable or holds no secret: nothing can
    be signed for it until an operator restores the file (the reason names it)."""


class WebhookSender(Protocol):
    def send(self, url: str, secret: str, msg_id: str, body: bytes, timeout: float) -> int:
        """POST `body` signed with `secret` as Standard Webhooks says (webhook-id,
        webhook-timestamp, webhook-signature), all within `timeout` seconds; the 2xx
        status, else DeliveryError saying what went wrong."""
        ...


class WebhookVault(Protocol):
    def new_secret(self, subscription: str) -> str:
        """Make and keep a new `whsec_` secret for the subscription; returned once."""
        ...

    def secret(self, subscription: str) -> str:
        """The subscription's secret; SecretUnreadable if its file is missing, cannot be
        read or holds no `whsec_` secret."""
        ...

    def cursor(self, subscription: str) -> int | None:
        """The log position of the last acknowledged delivery, None before the first."""
        ...

    def save_cursor(self, subscription: str, position: int) -> None:
        """Persist the cursor (atomically: a crash leaves the old one or the new one)."""
        ...

    def forget(self, subscription: str) -> None:
        """Wipe the secret and the cursor of a removed subscription."""
        ...
