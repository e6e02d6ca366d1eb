"""An identity as the API shows it (`rotator status`): its keys, what it awaits and why,
its problems, the records its customer publishes; pages of them, a DNS check, rotation
requests."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ...domain.reasons import Reason
from ...domain.states import Action, Mode, State
from .base import Answer, Time


class Record(Answer):
    """A zone-file line as structured data (a TXT record's strings joined into one value,
    as a DNS panel takes it)."""

    name: str
    ttl: int
    type: str
    value: str
    zone_line: str = Field(description="the same record as one zone-file line")


class CustomerDns(Answer):
    instructions: str = Field(description="what the customer must do, in words")
    records: list[Record]


class KeyView(Answer):
    selector: str
    key_id: str
    state: State
    since: Time
    algorithm: str
    next_action: Action | None
    next_action_at: Time
    attempts: int
    last_error: str | None
    last_error_code: Reason | None
    parked: bool = Field(description="its step failed too often: waits for a resume")
    drift: str | None = Field(description="what a nameserver serves instead of the record")


class Notice(Answer):
    """The customer's DNS broke after activation, or a notice about the identity."""

    kind: Literal["customer_dns_broken", "notice"]
    detail: str
    code: Reason | None


class Parked(Answer):
    kind: Literal["parked"]
    selector: str
    detail: str | None
    resume: str = Field(description="the command that tries it again (or POST .../resume)")


class Drift(Answer):
    kind: Literal["drift"]
    selector: str
    detail: str


IdentityProblem = Annotated[Notice | Parked | Drift, Field(discriminator="kind")]


class AwaitingKey(Answer):
    """The first key is still to be made."""

    step: Literal["generate"]
    at: Time
    why: None


class AwaitingStep(Answer):
    """The next step of the identity's newest unfinished key and why it waits."""

    step: Action | None
    selector: str
    at: Time
    why: str | None


class IdentityBrief(Answer):
    """An identity as a page lists it (without the customer's DNS instructions)."""

    identity: str
    domain: str
    customer: str | None
    mode: Mode
    policy: str
    zone: str
    signing_pattern: str
    active_selector: str | None
    pending_selector: str | None
    rotation_due_at: Time
    rotation_requested_at: Time
    removed_at: Time
    awaiting: AwaitingStep | AwaitingKey | None
    problems: list[IdentityProblem]
    keys: list[KeyView] = Field(description="every key not yet destroyed")


class IdentityView(IdentityBrief):
    customer_dns: CustomerDns


class IdentityPage(Answer):
    items: list[IdentityBrief]
    next: str | None = Field(description="the next page's `after`; null on the last page")


class DnsCheck(Answer):
    identity: str
    ok: bool
    problem: str | None
    instructions: str
    records: list[Record]


class RotationRequested(Answer):
    identity: str
    recorded: bool = Field(description="false: the same request was already waiting")
    switch: bool = Field(description="a verified standby key takes over (no key generation)")
    waiting_since: Time


class NotRotated(Answer):
    """A companion identity (the policy's second algorithm) that was not rotated."""

    identity: str
    recorded: Literal[False]
    not_rotated: str = Field(description="why")


class Rotations(Answer):
    requested: list[RotationRequested | NotRotated]
