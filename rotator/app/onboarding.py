"""Onboarding: signing identities, the ESP's own feedback-loop domains, customers (one at a
time or a whole CSV in one transaction) and customer-generated keys."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ..domain import events as ev
from ..domain import selector as sel
from ..domain.errors import InputError, RotatorError
from ..domain.model import IdentityState
from ..domain.names import (
    check_dns_name,
    check_signing_pattern,
    is_within,
    lookup_name,
    mail_domain,
    normalize_domain,
    pattern_domain,
    printable,
    record_location,
    wildcard_domain,
)
from ..domain.policy import Policy, pingpong_problem
from ..domain.states import Mode, Role
from .context import Context
from .customer_dns import CustomerDns
from .signer_limits import check_signable
from .zone_checks import ZONE_UNASKED, ZoneChecks

T = TypeVar("T")


def companion_identity(identity: str, algorithm: str) -> str:
    """The name of an identity's second-algorithm companion: never a valid domain, so it
    never collides with one."""
    return f"{identity}~{algorithm}"


@dataclass(frozen=True)
class CustomerRow:
    """One customer signing domain to onboard (a CLI call or a CSV row)."""

    customer: str
    domain: str
    mode: str
    policy: str
    signing_domain: str = ""
    esp_signature: str = ""
    zone: str = ""
    where: str = "input"  # "row 7" for CSV imports, for error messages


# CSV columns: the row's fields but the error location.
CSV_REQUIRED = ("customer", "domain", "mode", "policy")
CSV_COLUMNS = tuple(f for f in CustomerRow.__dataclass_fields__ if f != "where")


def _field(name: str, parse: Callable[[str], T], value: str) -> T:
    try:
        return parse(value)
    except RotatorError as exc:
        raise InputError(f"{name}: {exc}") from None


class Onboarding:
    def __init__(self, ctx: Context, customer_dns: CustomerDns) -> None:
        self.ctx = ctx
        self.customer_dns = customer_dns
        self.zones = ZoneChecks(ctx)

    def add_identity(
        self,
        domain: str,
        policy: str,
        zone: str | None = None,
        signing_pattern: str | None = None,
        actor: str = "operator",
        reason: str = "",
    ) -> IdentityState:
        """An identity the ESP controls outright (`rotator domain add`)."""
        name = mail_domain(domain)
        pattern = check_signing_pattern(signing_pattern or f"*@{name}", name)
        event = self.identity_event(domain, policy, zone, pattern, actor=actor, reason=reason)
        return self._add([event])[0]

    def add_esp(
        self,
        domain: str,
        policy: str,
        zone: str | None = None,
        actor: str = "operator",
        reason: str = "",
    ) -> IdentityState:
        """The ESP's own signing domain: the second, feedback-loop signature on customer
        mail (customers opt in with --esp-signature)."""
        if self.ctx.policy(policy).companion:
            raise InputError(
                f"policy {policy!r} has a [key] companion: an ESP signature is one key; "
                "give the ESP domain a policy without one"
            )
        event = self.identity_event(
            domain, policy, zone, "", role=Role.ESP, actor=actor, reason=reason
        )
        return self._add([event])[0]

    def add_customers(
        self,
        rows: Sequence[CustomerRow],
        actor: str = "operator",
        reason: str = "",
        progress: Callable[[Iterable[CustomerRow]], Iterable[CustomerRow]] = iter,
    ) -> list[IdentityState]:
        """Validate every row first, then add them all in one transaction: a bad row
        changes nothing. Errors name the row (its line in a CSV file) and the field."""
        events: list[ev.IdentityAdded] = []
        seen: dict[str, str] = {}  # identity or sending domain -> the row that has it
        for row in progress(rows):
            try:
                event = self.customer_event(row, actor, reason)
            except RotatorError as exc:
                raise InputError(f"{row.where}: {exc}") from None
            if event.identity in seen:
                raise InputError(f"{row.where}: domain {event.domain} appears twice")
            sending = pattern_domain(event.signing_pattern)
            if sending in seen:
                raise InputError(
                    f"{row.where}: sending domain {sending} is claimed twice (also at "
                    f"{seen[sending]}); a sending domain has one owner"
                )
            seen[event.identity] = seen[sending] = row.where
            events.append(event)
        return self._add(events)

    def customer_event(
        self, row: CustomerRow, actor: str, reason: str, takes_over: str = ""
    ) -> ev.IdentityAdded:
        customer = row.customer.strip()
        if not customer or len(customer) > 100 or "," in customer:
            raise InputError("customer: give a name of 1-100 characters without commas")
        printable("customer", customer, 100)
        try:
            mode = Mode(row.mode)
        except ValueError:
            raise InputError(
                f"mode: {row.mode!r} is not one of {', '.join(m.value for m in Mode)}"
            ) from None
        domain = _field("domain", mail_domain, row.domain)
        esp_identity = ""
        if row.esp_signature:
            esp_identity = _field("esp_signature", mail_domain, row.esp_signature)
            esp = self.ctx.store.identity(esp_identity)
            if esp is None or esp.role != Role.ESP:
                raise InputError(
                    f"esp_signature: {esp_identity} is not an ESP signing domain; add it with "
                    "`rotator esp add`"
                )
        pol = _field("policy", self.ctx.policy, row.policy)
        if row.signing_domain and mode is not Mode.THIRD_PARTY:
            raise InputError("signing_domain: only third-party customers have one")
        # d= and the zone of its records, per mode; the mail signed is always *@domain
        signer, zone = domain, row.zone or None
        if mode in (Mode.CNAME, Mode.PING_PONG):
            if not row.zone:
                raise InputError(
                    f"zone: {mode.value} customers need the ESP zone their CNAMEs point "
                    "into (e.g. cname.esp-dkim.net)"
                )
            problem = pingpong_problem(pol) if mode is Mode.PING_PONG else None
            if problem:
                raise InputError(f"policy: {problem}")
        elif mode is Mode.CUSTOMER_KEY:
            zone = row.zone or domain
        elif mode is Mode.NS_DELEGATION:
            zone = f"{pol.esp}._domainkey.{domain}"
        else:
            if not row.signing_domain:
                raise InputError(
                    "signing_domain: third-party customers need the ESP-controlled domain "
                    "that signs for them (e.g. acme.esp-dkim.net)"
                )
            signer = _field("signing_domain", mail_domain, row.signing_domain)
            if is_within(signer, domain):
                raise InputError(
                    f"signing_domain: {signer} is inside the customer's own domain; a "
                    "third-party signing domain is one the ESP controls"
                )
        return self.identity_event(
            signer,
            pol.name,
            zone,
            f"*@{domain}",
            customer=customer,
            mode=mode,
            esp_identity=esp_identity,
            actor=actor,
            reason=reason,
            takes_over=takes_over,
        )

    def identity_event(
        self,
        domain: str,
        policy: str,
        zone: str | None,
        signing_pattern: str,
        *,
        customer: str = "",
        mode: Mode = Mode.THIRD_PARTY,
        role: Role = Role.CUSTOMER,
        esp_identity: str = "",
        actor: str = "operator",
        reason: str = "",
        takes_over: str = "",
    ) -> ev.IdentityAdded:
        """Validate and build (not record) the event that adds one signing identity
        (`takes_over`: the identity it replaces, whose sending domain it may share)."""
        domain = mail_domain(domain)
        zone = normalize_domain(zone) if zone else domain
        if mode not in (Mode.CNAME, Mode.PING_PONG) and not (
            is_within(domain, zone) or is_within(zone, f"_domainkey.{domain}")
        ):
            # CNAME modes keep records in the ESP's zone under <selector>.<domain>.<zone>.
            raise InputError(
                f"zone {zone!r} cannot hold DKIM records of {domain!r}: use the domain, a "
                "parent of it, or a zone under _domainkey.<domain> such as "
                f"myesp._domainkey.{domain}"
            )
        pol = self.ctx.policy(policy)  # raises NotFound with the known names
        sample = sel.render(pol.selector_template, self.ctx.clock.now(), pol.esp)
        self._check_names(mode, domain, zone, pol, sample)
        if mode in (Mode.NS_DELEGATION, Mode.THIRD_PARTY) and not is_within(
            f"{sample}._domainkey.{domain}", zone
        ):
            raise InputError(
                f"policy {policy!r} makes selectors like {sample!r} whose records "
                f"({sample}._domainkey.{domain}) are outside zone {zone!r}; set "
                "[selector].esp to match the zone"
            )
        existing = self.ctx.store.identity(domain)
        if existing is not None and existing.retired_at is None:
            raise InputError(f"domain {domain} is already managed; see `rotator status`")
        sending = pattern_domain(signing_pattern) or (domain if role == Role.ESP else "")
        self._check_unclaimed(sending, takes_over, signing_pattern)
        return ev.IdentityAdded(
            at=self.ctx.clock.now(),
            actor=actor,
            reason=reason,
            identity=domain,
            domain=domain,
            zone=zone,
            policy=policy,
            signing_pattern=signing_pattern,
            customer=customer,
            mode=mode,
            role=role,
            esp_identity=esp_identity,
            takes_over=takes_over,
        )

    @staticmethod
    def _check_names(mode: Mode, domain: str, zone: str, pol: Policy, sample: str) -> None:
        """Every name this identity will ever need fits in DNS (253 octets, 63 per label):
        refused now, never a broken UPDATE for every tick later."""
        if mode in (Mode.CNAME, Mode.PING_PONG):
            slots = (
                list(pol.pingpong_slots)
                if mode is Mode.PING_PONG
                else [f"{pol.esp}{n}" for n in range(1, pol.cname_count + 1)]
            )
            for slot in slots:
                check_dns_name(lookup_name(slot, domain), "CNAME name")
                record_location(slot, domain, zone, via_cname=True)
        elif mode is not Mode.CUSTOMER_KEY:
            first, dot, rest = sample.partition(".")
            longest = f"{first}z{dot}{rest}"  # a selector collision adds a letter
            record_location(longest, domain, zone, via_cname=False)

    def _check_unclaimed(self, sending: str, takes_over: str = "", pattern: str = "") -> None:
        """A sending domain belongs to exactly one customer: two would both sign its mail
        (every matching SigningTable line signs with MultipleSignatures), and signers that
        pick one line would disagree with those that sign with both. So does a domain under
        another identity's `*@*.PARENT` pattern, and a `*@*.` pattern over another's domain."""
        if not sending:
            return
        store = self.ctx.store
        owner = store.identity_sending(sending)
        if owner is not None and owner.identity != takes_over:
            raise InputError(
                f"{sending} is already signed for {_who(owner)} (identity {owner.identity}); "
                "a sending domain has one owner: remove it there first"
            )
        above = store.identity_covering(sending)
        if above is not None and above.identity != takes_over:
            raise InputError(
                f"{sending} is signed by {above.signing_pattern} of {_who(above)} (identity "
                f"{above.identity}); give that identity the pattern *@{above.sending_domain}, "
                "or sign this domain there"
            )
        wide = wildcard_domain(pattern)
        under = [
            i
            for i in store.identities_under({wide} if wide else set())
            if not takes_over or takes_over not in (i.identity, i.companion_of)
        ]
        if under:
            raise InputError(
                f"{pattern} would also sign {under[0].sending_domain}, which is signed for "
                f"{_who(under[0])} (identity {under[0].identity}); use the pattern "
                f"*@{sending}"
            )

    def add_events(self, events: Sequence[ev.IdentityAdded]) -> list[IdentityState]:
        """Record identities built by customer_event / identity_event."""
        return self._add(events)

    def companion_event(self, primary: ev.IdentityAdded) -> ev.IdentityAdded | None:
        """Dual algorithms: the second identity of `primary`, following its policy's
        [key] companion: same d=, zone, mode and sending pattern, its own keys."""
        companion = self.ctx.policy(primary.policy).companion
        if not companion:
            return None
        algorithm = self.ctx.policy(companion).algorithm
        return dataclasses.replace(
            primary,
            identity=companion_identity(primary.identity, algorithm),
            policy=companion,
            companion_of=primary.identity,
        )

    def _add(self, events: Sequence[ev.IdentityAdded]) -> list[IdentityState]:
        # every identity whose policy wants a second algorithm gets its companion with it
        events = [*events, *(c for e in events if (c := self.companion_event(e)) is not None)]
        check_signable(self.ctx, events)
        self.check_zones([(e.domain, e.zone) for e in events if e.mode != Mode.CUSTOMER_KEY])
        # a removed domain coming back continues its identity's stream
        store = self.ctx.store
        back = [i for e in events if (i := store.identity(e.identity)) is not None]
        result = self.ctx.recorder.append(events, back)
        return [result.identities[e.identity] for e in events if not e.companion_of]

    def check_zones(self, placed: Sequence[tuple[str, str]]) -> None:
        """InputError, before anything is recorded, for the first (domain, zone) whose
        zone no DNS backend is configured for, or whose backend says it does not serve."""
        for domain, zone in placed:
            if not self.ctx.publisher.serves(zone):
                raise InputError(
                    f"domain {domain}: no DNS backend serves zone {zone}; add it to the "
                    "zones of a [[dns.backends]] entry, or set [dns] primary"
                )
        refused = self.zones.refused(zone for _, zone in placed)
        for domain, zone in placed:
            if zone in refused:
                raise InputError(f"domain {domain}: {refused[zone]}")

    def zone_problems(self, idents: Sequence[IdentityState]) -> list[str]:
        """Why the backend of each zone these identities publish in could not be asked
        whether it serves the zone, when they were added (each zone once): a warning, as
        their keys wait until it answers."""
        unasked = self.zones.unasked(i.zone for i in idents if i.mode != Mode.CUSTOMER_KEY)
        return [f"{why}: {ZONE_UNASKED}" for why in unasked]

    def instructions(self, ident: IdentityState) -> tuple[str, list[str]]:
        """(explanation, zone-file lines) the customer's IT must add for this identity."""
        return self.customer_dns.instructions(ident)


def _who(ident: IdentityState) -> str:
    return f"customer {ident.customer}" if ident.customer else "the ESP"
