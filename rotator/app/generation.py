"""New keys for identities whose rotation is due: where the key goes in each mode (selector,
record name, CNAME), why it cannot go anywhere yet (a deferral), and the key generation
itself, in parallel worker processes when there are many RSA keys."""

from __future__ import annotations

import multiprocessing
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from .. import faults
from ..domain import events as ev
from ..domain import selector as sel
from ..domain.errors import ConcurrencyError, IllegalTransition, RotatorError
from ..domain.model import IdentityState
from ..domain.names import cname_target, lookup_name, selector_seq
from ..domain.policy import DEFAULT_RETRY_MAX, Policy
from ..domain.record import build_record
from ..domain.states import Mode, State
from ..ports import GeneratedKey
from .context import Context
from .recording import TickReport, replacement_ids

PARALLEL_KEYGEN = 8  # below this, starting worker processes costs more than it saves


@dataclass(frozen=True)
class Placement:
    selector: str
    record_name: str
    lookup_name: str = ""  # CNAME modes: the name receivers query
    notice: str = ""


class Generation:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def generate(self, idents: list[IdentityState], now: datetime, report: TickReport) -> None:
        """New keys for every identity due: placed one by one (cheap), generated in parallel
        across CPU cores when there are many (RSA generation is the bottleneck), recorded in
        one transaction."""
        todo: list[tuple[IdentityState, Policy, Placement, str]] = []
        for ident in idents:
            if ident.pending_key is not None:  # a key is already on its way
                continue
            try:
                policy = self.ctx.policy(ident.policy)
            except RotatorError as exc:
                # One identity's missing policy file defers that identity, nobody else.
                self.ctx.recorder.defer(ident, now, now + DEFAULT_RETRY_MAX, str(exc))
                continue
            placement = self.place(ident, policy, now)
            if isinstance(placement, str):
                self._defer(ident, policy, now, placement)
                continue
            todo.append((ident, policy, placement, uuid.uuid4().hex[:16]))
        if not todo:
            return
        specs = [(key_id, policy.algorithm, policy.bits) for _, policy, _, key_id in todo]
        generated = self.keygen(specs)
        faults.point("after-key-written")
        events = [
            self._event(ident, policy, place, key_id, gen, now)
            for (ident, policy, place, key_id), gen in zip(todo, generated, strict=True)
        ]
        try:
            self.ctx.recorder.append(events)
        except (ConcurrencyError, IllegalTransition):
            for _, _, _, key_id in todo:  # never recorded: must not outlive this call
                self.ctx.keystore.destroy(key_id)
            raise
        report.generated += len(events)

    @staticmethod
    def _event(
        ident: IdentityState,
        policy: Policy,
        place: Placement,
        key_id: str,
        gen: GeneratedKey,
        now: datetime,
    ) -> ev.KeyGenerated:
        ids = replacement_ids(
            {
                "at": now,
                "key_id": key_id,
                "identity": ident.identity,
                "domain": ident.domain,
                "selector": place.selector,
            },
            ident,
        )
        return ev.KeyGenerated(
            **ids,
            policy=policy.name,
            algorithm=policy.algorithm,
            bits=policy.bits,
            fingerprint=gen.fingerprint,
            zone=ident.zone,
            record_name=place.record_name,
            record=build_record(policy.algorithm, gen.public_key_b64, policy.tags),
            ttl=policy.ttl,
            replaces=ident.active_key,
            lookup_name=place.lookup_name,
            notice=place.notice,
        )

    def keygen(self, specs: list[tuple[str, str, int]]) -> list[GeneratedKey]:
        """Generate keys; a process per core when there are enough to be worth it."""
        rsa = sum(1 for _, algorithm, _ in specs if algorithm == "rsa")
        # ed25519 keys take microseconds: only RSA is worth the worker processes
        if rsa < PARALLEL_KEYGEN or self.ctx.workers < 2:
            return [self.ctx.keystore.generate(*spec) for spec in specs]
        mp = multiprocessing.get_context("spawn")  # no fork of a threaded daemon
        with ProcessPoolExecutor(max_workers=self.ctx.workers, mp_context=mp) as pool:
            futures = [pool.submit(self.ctx.keystore.generate, *spec) for spec in specs]
            return [f.result() for f in futures]

    def place(self, ident: IdentityState, policy: Policy, now: datetime) -> Placement | str:
        """Where the next key of `ident` goes, or why there cannot be one yet."""
        store, domain = self.ctx.store, ident.domain
        if ident.mode == Mode.CUSTOMER_KEY:
            active = store.key(ident.active_key) if ident.active_key else None
            age = f" ({active.selector} active since {active.since:%Y-%m-%d})" if active else ""
            return (
                f"rotation needed from customer{age}: import their new key with "
                "`rotator customer import-key`"
            )
        if ident.mode == Mode.PING_PONG:
            keys = store.list_keys(ident.identity)
            busy = {k.selector for k in keys if k.state not in (State.REVOKED, State.DESTROYED)}
            slots = list(policy.pingpong_slots)
            active = next((k for k in keys if k.key_id == ident.active_key), None)
            start = slots.index(active.selector) + 1 if active and active.selector in slots else 0
            for slot in slots[start:] + slots[:start]:
                if slot not in busy:
                    return Placement(
                        slot, cname_target(slot, domain, ident.zone), lookup_name(slot, domain)
                    )
            return f"no free ping-pong slot: {', '.join(sorted(busy))} still in use"
        if ident.mode == Mode.CNAME:
            return self._next_cname(ident, policy)
        selector = sel.choose(
            policy.selector_template,
            now,
            policy.esp,
            store.selectors(domain),
            policy.collision,
        )
        return Placement(selector, lookup_name(selector, domain))

    def _next_cname(self, ident: IdentityState, policy: Policy) -> Placement | str:
        domain, esp = ident.domain, policy.esp
        used = [selector_seq(k.selector, esp) for k in self.ctx.store.list_keys(ident.identity)]
        n = max([x for x in used if x is not None], default=0) + 1
        if n > policy.cname_count:
            return (
                f"awaiting customer DNS: all {policy.cname_count} pre-created CNAMEs are "
                "used; the customer must add the next ones (`rotator customer check`)"
            )
        selector = f"{esp}{n}"
        left = sum(
            1
            for m in range(n + 1, policy.cname_count + 1)
            if self.ctx.probe.cname(lookup_name(f"{esp}{m}", domain))
            == cname_target(f"{esp}{m}", domain, ident.zone)
        )
        notice = ""
        if left < policy.cname_warn_below:
            notice = (
                f"only {left} pre-created CNAMEs left after {selector}; ask the customer "
                "for more (`rotator customer check`)"
            )
        return Placement(
            selector,
            cname_target(selector, domain, ident.zone),
            lookup_name(selector, domain),
            notice,
        )

    def _defer(self, ident: IdentityState, policy: Policy, now: datetime, why: str) -> None:
        # Customer-managed keys wait for the customer: look again daily, not every retry.
        # A busy ping-pong slot frees when its key's next step (revocation) is done: look
        # again then, not a full retry_max later.
        retry_at = now + max(policy.retry_max, policy.retry_base)
        if ident.mode == Mode.CUSTOMER_KEY:
            retry_at = now + timedelta(days=1)
        elif ident.mode == Mode.PING_PONG:
            steps = [
                k.next_action_at
                for k in self.ctx.store.list_keys(ident.identity)
                if k.state is State.DRAINING and k.next_action_at is not None
            ]
            if steps:
                retry_at = min(retry_at, max(min(steps), now) + policy.retry_base)
        self.ctx.recorder.defer(ident, now, retry_at, why)
