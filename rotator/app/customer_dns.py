"""The customer's side of DNS: what their IT must add for each mode, and whether it is
there (NS delegation at the parent, pre-created CNAMEs, a customer-published key)."""

from __future__ import annotations

from ..domain import onboarding
from ..domain.errors import ExternalError
from ..domain.model import IdentityState, KeyState
from ..domain.names import cname_target, lookup_name
from ..domain.record import split_strings
from ..domain.states import Mode, State
from ..domain.verification import judge, judge_delegation, summarize
from .context import Context

_CUSTOMER_LIVE = (State.PUBLISHED, State.VERIFIED, State.ACTIVE)


def txt_line(key: KeyState, ttl: int) -> str:
    """The zone-file line of a key's record, split into 255-octet strings."""
    text = " ".join(f'"{c.decode()}"' for c in split_strings(key.record))
    return f"{key.record_name} {ttl} IN TXT ( {text} )"


def customer_of(ident: IdentityState | None, domain: str) -> str:
    """Whose DNS a check asks: one customer's checks share a bounded part of the pool."""
    if ident is None:
        return domain
    return ident.customer or ident.domain


class CustomerDns:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def instructions(self, ident: IdentityState) -> tuple[str, list[str]]:
        """(explanation, zone-file lines) the customer's IT must add for this identity."""
        customer_domain = ident.signing_pattern.partition("@")[2] or ident.domain
        text = onboarding.explain(ident.mode, customer_domain, ident.domain, ident.zone)
        if ident.mode in (Mode.CNAME, Mode.PING_PONG, Mode.CUSTOMER_KEY):
            records = [f"{name} 86400 IN CNAME {target}" for name, target in self.cnames(ident)]
            records += [txt_line(k, k.ttl) for k in self._customer_keys(ident)]
            return text, records
        # only a delegation names the ESP's nameservers: no DNS lookup for the other modes
        names = self.esp_nameservers(ident.zone) if ident.mode == Mode.NS_DELEGATION else []
        return text, onboarding.customer_records(ident.mode, ident.domain, ident.zone, names)

    def esp_nameservers(self, zone: str) -> list[str]:
        if self.ctx.esp_nameservers:
            return sorted(self.ctx.esp_nameservers)
        return sorted(self.ctx.probe.delegation(zone).served)

    def cnames(self, ident: IdentityState) -> list[tuple[str, str]]:
        """(name, target) of every CNAME the customer must create."""
        policy = self.ctx.policy(ident.policy)
        if ident.mode == Mode.PING_PONG:
            names = list(policy.pingpong_slots)
        elif ident.mode == Mode.CNAME:
            names = [f"{policy.esp}{n}" for n in range(1, policy.cname_count + 1)]
        else:
            return []
        return [
            (lookup_name(n, ident.domain), cname_target(n, ident.domain, ident.zone)) for n in names
        ]

    def check(self, ident: IdentityState, deadline: float | None = None) -> str | None:
        """None when the customer's side is in place, else what is missing. Every lookup
        ends by `deadline` (time.monotonic(); None: the probe's own bound per lookup)."""
        probe = self.ctx.probe
        if ident.mode in (Mode.CNAME, Mode.PING_PONG):
            missing = [
                name for name, target in self.cnames(ident) if probe.cname(name, deadline) != target
            ]
            if not missing:
                return None
            return (
                f"awaiting customer DNS: {len(missing)} CNAMEs missing or wrong: "
                + ", ".join(missing[:5])
                + (" ..." if len(missing) > 5 else "")
            )
        if ident.mode == Mode.CUSTOMER_KEY:
            problems = []
            for key in self._customer_keys(ident):
                try:
                    observed = probe.observe(key.zone, key.record_name, deadline)
                except ExternalError as exc:
                    problems.append(f"{key.record_name} ({exc.reason})")
                    continue
                ok, results = judge(key.record, observed, key_only=True)
                if not ok:
                    problems.append(f"{key.record_name} ({summarize(results)})")
            return "awaiting customer DNS: " + "; ".join(problems) if problems else None
        if ident.mode != Mode.NS_DELEGATION:
            return None
        view = probe.delegation(ident.zone, deadline)
        return judge_delegation(view, self.ctx.esp_nameservers)

    def cname_problem(self, key: KeyState, deadline: float | None = None) -> str | None:
        """CNAME and ping-pong: receivers reach the record only through the customer's
        CNAME, so it must point exactly at the record."""
        target = self.ctx.probe.cname(key.lookup_name, deadline)
        if target == key.record_name:
            return None
        seen = f"points to {target}" if target else "is missing"
        return f"awaiting customer DNS: CNAME {key.lookup_name} -> {key.record_name} {seen}"

    def _customer_keys(self, ident: IdentityState) -> list[KeyState]:
        return [
            k
            for k in self.ctx.store.list_keys(ident.identity)
            if k.customer_managed and k.state in _CUSTOMER_LIVE
        ]
