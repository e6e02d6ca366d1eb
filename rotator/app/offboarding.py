"""Offboarding: a customer (or one of its domains) leaves. The identity stops signing at
once on every signer target; its active key drains for the drain window (or not, with
--now), keys on their way are withdrawn; then the normal steps revoke, destroy and remove
the tombstones. The identity stays in the log, retired, and its selectors are never used
again. What the customer set up in their own DNS for it is listed for them to remove."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import structlog

from ..domain.errors import InputError, NotFound, RotatorError
from ..domain.model import IdentityState, KeyState
from ..domain.names import normalize_domain
from ..domain.states import Mode, Role
from .context import Context
from .customer_dns import CustomerDns
from .retiring import Retiring, retire_events, retiring
from .withdrawal import Withdrawal, Withdrawn

log = structlog.get_logger("rotator")


@dataclass(frozen=True)
class Removal:
    identities: list[IdentityState]
    draining: list[KeyState]  # active keys: drain (or revoke at once with --now)
    withdrawn: list[KeyState]  # keys that never signed
    customer_dns: dict[str, list[str]]  # identity -> records the customer may now remove
    outcome: Withdrawn = field(default_factory=Withdrawn)  # what the removal did to the signers


class Offboarding:
    def __init__(self, ctx: Context, withdrawal: Withdrawal, customer_dns: CustomerDns) -> None:
        self.ctx = ctx
        self.withdrawal = withdrawal
        self.customer_dns = customer_dns

    def domain(self, domain: str) -> list[IdentityState]:
        name = normalize_domain(domain)
        ident = self.ctx.store.identity(name)
        if ident is None:
            raise NotFound(f"domain {name} is not managed; see `rotator domain list`")
        # its second-algorithm key goes with it
        live = [c for c in self.ctx.store.companions(name) if c.retired_at is None]
        return [ident, *live] if ident.retired_at is None else [ident]

    def customer(self, customer: str) -> list[IdentityState]:
        found = [
            i
            for i in self.ctx.store.identities()
            if i.customer == customer and i.retired_at is None
        ]
        if not found:
            raise NotFound(
                f"customer {customer!r} has no managed domain; see `rotator customer list`"
            )
        return found

    def plan(self, idents: list[IdentityState], now: bool) -> Removal:
        """What removing these identities does; InputError if one may not go."""
        store = self.ctx.store
        leaving = {i.identity for i in idents}
        for ident in idents:
            if ident.retired_at is not None:
                raise InputError(
                    f"domain {ident.domain} was already removed on {ident.retired_at:%F}"
                )
            if ident.role == Role.ESP:
                users = [c.identity for c in store.esp_customers(ident.identity)]
                staying = sorted(set(users) - leaving)
                if staying:
                    more = f" and {len(staying) - 3} more" if len(staying) > 3 else ""
                    raise InputError(
                        f"{ident.domain} signs the feedback-loop signature of "
                        f"{', '.join(staying[:3])}{more}; remove them (or move them to another "
                        "ESP identity) first"
                    )
        r = retiring(store, idents)
        records = {i.identity: self._leftovers(i) for i in idents if not i.companion_of}
        return Removal(idents, r.draining, r.withdrawn, records)

    def _leftovers(self, ident: IdentityState) -> list[str]:
        if ident.mode in (Mode.THIRD_PARTY,) and ident.role != Role.ESP:
            return []
        try:
            return self.customer_dns.instructions(ident)[1]
        except RotatorError:  # e.g. the policy file is gone: nothing to list from it
            return []

    def remove(self, removal: Removal, now: bool, actor: str, reason: str) -> Removal:
        """Take the identities' keys out of every signer, then record the removal, both
        under the signer lock (as an emergency does: an activation waits, then sees it)."""
        at = self.ctx.clock.now()
        r = Retiring(removal.identities, removal.draining, removal.withdrawn)
        events = retire_events(r, self.ctx.policy, at, now, actor, reason)
        patterns = {i.signing_pattern for i in removal.identities}
        # their copies stay for the targets' grace (mail in flight)
        withdrawn = self.withdrawal.run(
            removal.draining, events, r.basis, wipe=False, unsigned=patterns
        )
        log.info(
            "offboarded",
            identities=[i.identity for i in removal.identities],
            now=now,
            actor=actor,
            signer_error=withdrawn.signer_error,
        )
        return dataclasses.replace(removal, outcome=withdrawn)
