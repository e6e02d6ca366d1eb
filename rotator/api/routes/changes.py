"""Changes to a managed identity, as `rotator domain set-policy|set-mode|remove`,
`rotator customer import-key|remove` and `rotator resume` make them: the same use cases,
so the same checks and the same one-line errors."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ...bootstrap import MAX_PEM, App, txt_line
from ...domain.states import Mode
from ..models.changes import (
    KeyImported,
    ModeChanged,
    PolicyChanged,
    RemovalPlan,
    Removed,
    Resumed,
    ResumedStep,
)
from ..views import identity_fields, key_brief, signer_results
from .common import Write, writes, zone_warnings

router = APIRouter(prefix="/v1", tags=["changes"])
Provision = Annotated[Write, writes("provision")]


class PolicyChange(BaseModel):
    policy: str = Field(description="the policy the identity's next key follows")
    rotate_now: bool = Field(False, description="make the next key now (--rotate-now)")
    reason: str = Field("", max_length=1000)


class ModeChange(BaseModel):
    mode: Mode
    zone: str | None = Field(None, description="the zone of the new mode (default: derived)")
    signing_domain: str = Field("", description="to third-party: the ESP domain that signs")
    rotate_now: bool = Field(False, description="make the next key now (--rotate-now)")
    reason: str = Field("", max_length=1000)


class KeyImport(BaseModel):
    selector: str = Field(description="the selector the customer publishes under")
    # bounded loosely here; the key store's own limit (MAX_PEM) words the refusal
    pem: str = Field(description="the customer's private key, unencrypted PEM", max_length=65536)
    reason: str = Field("", max_length=1000)


class Removal(BaseModel):
    now: bool = Field(False, description="revoke at once, without the drain window (--now)")
    dry_run: bool = Field(False, description="what would happen; nothing changes")
    confirm: bool = Field(False, description="--yes: a removal above the safety limit")
    reason: str = Field("", max_length=1000)


class Resume(BaseModel):
    reason: str = Field("", max_length=1000)


@router.put(
    "/identities/{domain}/policy",
    response_model=PolicyChanged,
    summary="Move to another policy (`domain set-policy`)",
)
def set_policy(domain: str, body: PolicyChange, write: Provision) -> JSONResponse:
    def run(app: App, reason: str) -> tuple[int, PolicyChanged]:
        changed = app.changes.set_policy(domain, body.policy, body.rotate_now, write.actor, reason)
        view = identity_fields(app, changed.identity)
        return 200, PolicyChanged(**view, rotating=changed.rotating)

    return write(body, run, wake=True)  # with rotate_now the next key is made on this tick


@router.put(
    "/identities/{domain}/mode",
    response_model=ModeChanged,
    summary="Move to another delegation mode (`set-mode`)",
)
def set_mode(domain: str, body: ModeChange, write: Provision) -> JSONResponse:
    def run(app: App, reason: str) -> tuple[int, ModeChanged]:
        changed = app.changes.set_mode(
            domain, body.mode, body.zone, body.rotate_now, write.actor, reason, body.signing_domain
        )
        ident = changed.identity
        return 200, ModeChanged(
            **identity_fields(app, ident),
            warnings=zone_warnings(app, ident),
            rotating=changed.rotating,
            explanation=changed.explanation or None,
            records_to_add=list(changed.records),
        )

    return write(body, run, wake=True)


@router.post(
    "/identities/{domain}/keys",
    status_code=201,
    response_model=KeyImported,
    summary="Take a customer-generated key (`customer import-key`); never echoed",
)
def import_key(domain: str, body: KeyImport, write: Provision) -> JSONResponse:
    # as the CLI reads the file: no more than a key can be, the key store words the refusal
    pem = body.pem.encode()[: MAX_PEM + 1]

    def run(app: App, reason: str) -> tuple[int, KeyImported]:
        k = app.keyimport.import_key(domain, body.selector, pem, write.actor, reason)
        return 201, KeyImported(
            identity=k.identity,
            domain=k.domain,
            selector=k.selector,
            fingerprint=k.fingerprint,
            record=txt_line(k, k.ttl),  # what the customer must publish
        )

    # the daemon verifies the customer's record on every nameserver
    return write(body, run, wake=True)


def remove(write: Write, body: Removal, what: tuple[str, str]) -> JSONResponse:
    """`domain remove` or `customer remove`: plan, the safety valve, then the removal."""

    def run(app: App, reason: str) -> tuple[int, RemovalPlan | Removed]:
        kind, name = what
        idents = (
            app.offboarding.domain(name) if kind == "domain" else app.offboarding.customer(name)
        )
        removal = app.offboarding.plan(idents, body.now)
        if not body.dry_run:
            names = ", ".join(i.domain for i in idents[:3]) + (" ..." if len(idents) > 3 else "")
            count = len(removal.draining) + len(removal.withdrawn)
            app.safety.check_command(count, f"removing {names}", body.confirm)
        plan = RemovalPlan(
            dry_run=body.dry_run,
            identities=[i.identity for i in removal.identities],
            draining=[key_brief(k) for k in removal.draining],
            withdrawn=[key_brief(k) for k in removal.withdrawn],
        )
        if body.dry_run:
            return 200, plan
        done = app.offboarding.remove(removal, body.now, write.actor, reason)
        return 200, Removed(
            **dict(plan),
            customer_dns_to_remove=done.customer_dns,  # records the customer may remove
            signers=signer_results(done.outcome.targets),
            signer_error=done.outcome.signer_error,
        )

    # the daemon revokes and destroys the keys
    return write(body, run, wake=not body.dry_run)


# a dry run answers the plan; a removal, what it did besides
REMOVAL = RemovalPlan | Removed


@router.delete(
    "/identities/{domain}",
    response_model=REMOVAL,
    summary="Stop signing for a domain (`domain remove`)",
)
def remove_identity(domain: str, body: Removal, write: Provision) -> JSONResponse:
    return remove(write, body, ("domain", domain))


@router.delete(
    "/customers/{name}",
    response_model=REMOVAL,
    summary="Offboard a customer (`customer remove`)",
)
def remove_customer(name: str, body: Removal, write: Provision) -> JSONResponse:
    return remove(write, body, ("customer", name))


@router.post(
    "/identities/{domain}/resume",
    response_model=Resumed,
    summary="Try parked steps again now (`resume`)",
)
def resume(domain: str, body: Resume, write: Annotated[Write, writes("rotate")]) -> JSONResponse:
    def run(app: App, reason: str) -> tuple[int, Resumed]:
        keys = app.rotation.resume(domain, write.actor, reason)
        return 200, Resumed(resumed=[ResumedStep(domain=k.domain, selector=k.selector,
                                                 step=k.next_action) for k in keys])  # fmt: skip

    return write(body, run, wake=True)
