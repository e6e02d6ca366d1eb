"""What a change to an identity answers: onboarded, moved to another policy or mode, a
customer's key imported, removed (or the plan of a removal), parked steps resumed."""

from __future__ import annotations

from pydantic import Field

from ...domain.states import Action
from .base import Answer, KeyBrief, SignerResult
from .identities import IdentityView


class Onboarded(IdentityView):
    warnings: list[str] = Field(
        description="zones whose DNS backend could not be asked whether it serves them"
    )


class PolicyChanged(IdentityView):
    rotating: bool = Field(description="the next key is being made now (rotate_now)")


class ModeChanged(IdentityView):
    warnings: list[str] = Field(
        description="zones whose DNS backend could not be asked whether it serves them"
    )
    rotating: bool = Field(description="a key of the new mode is being made")
    explanation: str | None = Field(description="what the customer must do, in words")
    records_to_add: list[str] = Field(description="the customer's records, as zone-file lines")


class KeyImported(Answer):
    """The imported key, never the key itself."""

    identity: str
    domain: str
    selector: str
    fingerprint: str
    record: str = Field(description="the TXT record the customer publishes (zone-file line)")


class RemovalPlan(Answer):
    """A dry run: what the removal would take out; nothing changed."""

    dry_run: bool
    identities: list[str]
    draining: list[KeyBrief] = Field(description="keys that drain, then are revoked")
    withdrawn: list[KeyBrief] = Field(description="keys that never signed: withdrawn now")


class Removed(RemovalPlan):
    customer_dns_to_remove: dict[str, list[str]] = Field(
        description="per identity, the records its customer may now remove"
    )
    signers: list[SignerResult]
    signer_error: str | None


class ResumedStep(Answer):
    domain: str
    selector: str
    step: Action | None


class Resumed(Answer):
    resumed: list[ResumedStep]
