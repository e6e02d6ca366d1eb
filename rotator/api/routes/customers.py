"""/v1/customers: onboard a customer domain in any delegation mode; the answer holds the
records the customer must add, structured and as zone-file lines."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ...bootstrap import CustomerRow
from ...domain.states import Mode
from ..models.changes import Onboarded
from .common import Write, writes, zone_warnings

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


@router.post(
    "",
    status_code=201,
    response_model=Onboarded,
    summary="Onboard a customer domain (`rotator customer add`)",
)
def add_customer(
    body: CustomerRequest, write: Annotated[Write, writes("provision")]
) -> JSONResponse:
    row = CustomerRow(
        body.customer, body.domain, body.mode.value, body.policy,
        body.signing_domain, body.esp_signature, body.zone,
    )  # fmt: skip
    state = write.state

    def perform(reason: str) -> tuple[int, Onboarded]:
        # recorded with the other requests waiting for the App (one commit for all)
        ident, fields = state.onboarding.add(row, write.actor, reason)
        # a SOA query to the primary: outside the App's lock, which reads go on under
        return 201, Onboarded(**fields, warnings=zone_warnings(state.app, ident))

    return write.taking_lock(body, perform, wake=True)
