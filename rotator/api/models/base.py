"""What every answer model shares, and the small parts more than one resource answers
with (the keys an operation takes out, the signer targets' results)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from ...domain.states import State

# Times are rotator's one fixed ISO 8601 UTC text (timeutil.iso), not pydantic's own form.
Time = Annotated[
    str | None, Field(description="ISO 8601 UTC, e.g. 2026-01-01T00:00:00.000000+00:00")
]


class Answer(BaseModel):
    # every key is declared: the document is the whole answer, and schemathesis holds the
    # server to it
    model_config = ConfigDict(extra="forbid")


class KeyBrief(Answer):
    """A key an operation takes out of service: enough to name it."""

    domain: str
    selector: str
    state: State


class SignerResult(Answer):
    """One signer target's outcome of the write an operation made."""

    target: str
    ok: bool
    detail: str


def dumped(answer: Answer) -> dict[str, Any]:
    """The JSON an answer is sent as (and kept as, for an Idempotency-Key replay)."""
    return answer.model_dump(mode="json")
