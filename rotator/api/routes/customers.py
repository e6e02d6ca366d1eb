"""/v1/customers: onboard a customer domain in any delegation mode; the answer holds the
records the customer must add, structured and as zone-file lines."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ...bootstrap import App, CustomerRow, Token
from ...domain.states import Mode
from ..state import ApiState, api_state, scoped
from ..views import identity_view
from .common import IdempotencyKey, answer, reason_text

router = APIRouter(prefix="/v1/customers", tags=["customers"])


class CustomerRequest(BaseModel):
    customer: str = Field(description="the customer's name")
    domain: str = Field(description="the customer's sending domain")
    mode: Mode
    policy: str
    signing_domain: str = Field("", description="third-party: the ESP domain that signs (d=)")
    zone: str = Field("", description="third-party: the zone of the signing domain's records")
    esp_signature: str = Field("", description="also sign with this ESP signing domain")
    reason: str = Field("", max_length=1000)


@router.post("", status_code=201, summary="Onboard a customer domain (`rotator customer add`)")
def add_customer(
    body: CustomerRequest,
    state: Annotated[ApiState, Depends(api_state)],
    token: Annotated[Token, scoped("provision")],
    key: IdempotencyKey = None,
) -> JSONResponse:
    reason = reason_text(body.reason)

    def run(app: App) -> tuple[int, Any]:
        row = CustomerRow(
            body.customer, body.domain, body.mode.value, body.policy,
            body.signing_domain, body.esp_signature, body.zone,
        )  # fmt: skip
        (ident,) = app.onboarding.add_customers([row], token.name, reason)
        view = identity_view(app, ident)
        view["warnings"] = [
            f"{p}: add the zone to the primary before its first key is published"
            for p in app.onboarding.zone_problems([ident])
        ]
        return 201, view

    status, result = state.once(token, key, body.model_dump(mode="json"), run)
    state.wake(False)
    return answer(status, result)
