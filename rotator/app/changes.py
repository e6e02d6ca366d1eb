"""A customer changes policy or delegation mode. Nothing about the active key changes: the
next key follows the new policy and is placed the new way, and the active key keeps
signing until that key is verified (through the new path: the customer's new delegation
or CNAMEs included), so there is never a gap. `rotate_now` asks for that next key now."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..domain import events as ev
from ..domain import selector as sel
from ..domain.errors import InputError, NotFound
from ..domain.model import IdentityState
from ..domain.names import is_within, normalize_domain, pattern_domain
from ..domain.states import Mode, Role
from .context import Context
from .customer_dns import CustomerDns
from .offboarding import Offboarding
from .onboarding import CustomerRow, Onboarding, companion_identity
from .signer_limits import check_signable


@dataclass(frozen=True)
class Changed:
    identity: IdentityState
    rotating: bool  # a new key was asked for now (else: at the next scheduled rotation)
    explanation: str = ""  # what the customer must do first (a mode change)
    records: tuple[str, ...] = ()


class Changes:
    def __init__(
        self,
        ctx: Context,
        customer_dns: CustomerDns,
        onboarding: Onboarding,
        offboarding: Offboarding,
    ) -> None:
        self.ctx = ctx
        self.customer_dns = customer_dns
        self.onboarding = onboarding
        self.offboarding = offboarding

    def _identity(self, domain: str) -> IdentityState:
        name = normalize_domain(domain)
        ident = self.ctx.store.identity(name)
        if ident is None:
            raise NotFound(f"domain {name} is not managed; see `rotator domain list`")
        if ident.retired_at is not None:
            raise InputError(f"domain {name} was removed on {ident.retired_at:%F}")
        return ident

    def set_policy(
        self, domain: str, policy: str, rotate_now: bool, actor: str, reason: str
    ) -> Changed:
        ident = self._identity(domain)
        pol = self.ctx.policy(policy)  # NotFound with the known names
        if ident.companion_of:
            raise InputError(
                f"{ident.identity} is the second key of {ident.companion_of}: change the policy "
                f"of {ident.companion_of} (its [key] companion decides this one)"
            )
        if policy == ident.policy and not rotate_now:
            raise InputError(f"{ident.domain} already follows policy {policy}")
        if ident.mode in (Mode.NS_DELEGATION, Mode.THIRD_PARTY):
            sample = sel.render(pol.selector_template, self.ctx.clock.now(), pol.esp)
            if not is_within(f"{sample}._domainkey.{ident.domain}", ident.zone):
                raise InputError(
                    f"policy {policy!r} makes selectors like {sample!r} whose records are "
                    f"outside zone {ident.zone}; set its [selector].esp to match the zone"
                )
        now = self.ctx.clock.now()
        events: list[ev.Event] = []
        if policy != ident.policy:
            events.append(
                ev.PolicyChanged(
                    at=now,
                    actor=actor,
                    reason=reason,
                    identity=ident.identity,
                    domain=ident.domain,
                    policy=policy,
                    previous=ident.policy,
                )
            )
        rotating = self._rotation(ident, rotate_now, events, actor, reason)
        basis: list[IdentityState] = [ident]
        dropped = self._companion(ident, pol.companion, events, basis, actor, reason)
        added = [e for e in events if isinstance(e, ev.IdentityAdded)]
        if added:  # a second own signature: a target may sign only one per sender
            check_signable(self.ctx, added)
        result = self.ctx.recorder.append(events, basis)
        if dropped is not None:  # no second algorithm any more: it stops signing, drains
            removal = self.offboarding.plan([dropped], now=False)
            self.offboarding.remove(removal, False, actor, reason or "policy without companion")
        return Changed(result.identities[ident.identity], rotating)

    def _companion(
        self,
        ident: IdentityState,
        wanted: str,
        events: list[ev.Event],
        basis: list[IdentityState],
        actor: str,
        reason: str,
    ) -> IdentityState | None:
        """Keep the dual-algorithm companion in step with the new policy: add it, move it
        to the new companion policy, or return it to be retired."""
        live = [c for c in self.ctx.store.companions(ident.identity) if c.retired_at is None]
        current = live[0] if live else None
        if current is not None and not wanted:
            return current
        if not wanted or (current is not None and current.policy == wanted):
            return None
        now = self.ctx.clock.now()
        if current is not None:
            events.append(
                ev.PolicyChanged(
                    at=now,
                    actor=actor,
                    reason=reason,
                    identity=current.identity,
                    domain=current.domain,
                    policy=wanted,
                    previous=current.policy,
                )
            )
            basis.append(current)
            return None
        algorithm = self.ctx.policy(wanted).algorithm
        name = companion_identity(ident.identity, algorithm)
        retired = self.ctx.store.identity(name)  # a companion removed before comes back
        if retired is not None:
            basis.append(retired)
        events.append(
            ev.IdentityAdded(
                at=now,
                actor=actor,
                reason=reason,
                identity=name,
                domain=ident.domain,
                zone=ident.zone,
                policy=wanted,
                signing_pattern=ident.signing_pattern,
                customer=ident.customer,
                mode=ident.mode,
                role=ident.role,
                esp_identity=ident.esp_identity,
                companion_of=ident.identity,
            )
        )
        return None

    def set_mode(
        self,
        domain: str,
        mode: Mode,
        zone: str | None,
        rotate_now: bool,
        actor: str,
        reason: str,
        signing_domain: str = "",
    ) -> Changed:
        """Another delegation mode. If d= stays (the customer's own domain before and
        after), the identity changes mode and its next key is placed the new way. If d=
        moves (to or from a third-party signing domain), a new identity takes over: it
        signs from its first active key on, and the old one is then retired."""
        ident = self._identity(domain)
        if ident.role == Role.ESP:
            raise InputError(f"{ident.domain} is an ESP identity: it has no delegation mode")
        if Mode.CUSTOMER_KEY in (mode, ident.mode):
            raise InputError(
                "moving to or from customer-key needs the customer's own keys: remove the "
                "domain and add it again in the new mode"
            )
        sender = pattern_domain(ident.signing_pattern) or ident.domain
        signer = normalize_domain(signing_domain) if signing_domain else sender
        if mode == Mode.THIRD_PARTY and not signing_domain:
            raise InputError("third-party needs --signing-domain: the ESP domain that signs (d=)")
        if signer != ident.identity:
            return self._successor(ident, mode, zone, signing_domain, actor, reason)
        new_zone = normalize_domain(zone) if zone else self._zone_for(ident, mode)
        if (mode, new_zone) == (ident.mode, ident.zone):
            raise InputError(f"{ident.domain} is already in mode {mode} (zone {new_zone})")
        self.onboarding.check_zones([(ident.domain, new_zone)])
        now = self.ctx.clock.now()
        moved = ev.ModeChanged(
            at=now,
            actor=actor,
            reason=reason,
            identity=ident.identity,
            domain=ident.domain,
            mode=mode,
            zone=new_zone,
            previous_mode=ident.mode,
            previous_zone=ident.zone,
        )
        events: list[ev.Event] = [moved]
        rotating = self._rotation(ident, rotate_now, events, actor, reason)
        # the second-algorithm key moves with it
        companions = [c for c in self.ctx.store.companions(ident.identity) if not c.retired_at]
        events += [
            dataclasses.replace(moved, identity=c.identity, domain=c.domain) for c in companions
        ]
        result = self.ctx.recorder.append(events, [ident, *companions])
        changed = result.identities[ident.identity]
        text, records = self.customer_dns.instructions(changed)
        return Changed(changed, rotating, text, tuple(records))

    def _successor(
        self,
        ident: IdentityState,
        mode: Mode,
        zone: str | None,
        signing_domain: str,
        actor: str,
        reason: str,
    ) -> Changed:
        row = CustomerRow(
            customer=ident.customer,
            domain=pattern_domain(ident.signing_pattern) or ident.domain,
            mode=mode.value,
            policy=ident.policy,
            signing_domain=signing_domain if mode == Mode.THIRD_PARTY else "",
            esp_signature=ident.esp_identity,
            zone=zone or "",
        )
        event = self.onboarding.customer_event(row, actor, reason, takes_over=ident.identity)
        (successor,) = self.onboarding.add_events([event])
        text, records = self.customer_dns.instructions(successor)
        text = (
            f"{successor.domain} takes over from {ident.domain} (d= changes): "
            f"{ident.domain} signs until the first key of {successor.domain} is active. {text}"
        )
        return Changed(successor, True, text, tuple(records))

    def _zone_for(self, ident: IdentityState, mode: Mode) -> str:
        if mode == Mode.NS_DELEGATION:
            esp = self.ctx.policy(ident.policy).esp
            return f"{esp}._domainkey.{ident.domain}"
        if mode == Mode.THIRD_PARTY:
            return ident.domain
        cnames = (Mode.CNAME, Mode.PING_PONG)
        if mode in cnames and ident.mode in cnames:
            return ident.zone  # the same ESP zone holds the CNAME targets
        raise InputError(f"mode {mode} needs --zone: the ESP zone that holds the CNAME targets")

    def _rotation(
        self,
        ident: IdentityState,
        rotate_now: bool,
        events: list[ev.Event],
        actor: str,
        reason: str,
    ) -> bool:
        if not rotate_now:
            return False
        if ident.pending_key is not None:
            # a key is already on its way: it follows the old policy; the next one the new
            raise InputError(
                f"{ident.domain}: a new key is already on its way; change without "
                "--rotate-now, or wait until it is active"
            )
        events.append(
            ev.RotationRequested(
                at=self.ctx.clock.now(),
                actor=actor,
                reason=reason,
                identity=ident.identity,
                domain=ident.domain,
            )
        )
        return True
