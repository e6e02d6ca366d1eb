"""New keys for identities whose rotation is due: where the key goes in each mode (selector,
record name, CNAME), why it cannot go anywhere yet (a deferral), and the key generation
itself, in parallel worker processes when there are many RSA keys."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import as_completed
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from .. import faults
from ..domain import events as ev
from ..domain import selector as sel
from ..domain.errors import ConcurrencyError, ExternalError, IllegalTransition, RotatorError
from ..domain.model import IdentityState
from ..domain.names import cname_target, lookup_name, selector_seq
from ..domain.policy import DEFAULT_RETRY_MAX, Policy
from ..domain.reasons import Reason
from ..domain.record import build_record
from ..domain.states import Mode, State
from ..ports import GeneratedKey
from .context import Context
from .recording import TickReport, replacement_ids

PARALLEL_KEYGEN = 8  # below this, starting worker processes costs more than it saves
CHUNK = 16  # keys recorded per transaction while a batch is generated
# ... and lasts at least this long: each chunk costs a pass (an UPDATE, a propagation wait,
# the main process's CPU, which the workers need on a small machine), and keys that take
# microseconds (ed25519) go on in one batch, not 16 at a time
MIN_CHUNK_S = 0.5
# Pooled keys are recorded and published a chunk at a time, the first chunk small: a
# secondary takes the first change at once, and the next ones only after a pause of its
# own (BIND: about 0.5 s), so every change should have left by then
POOL_FIRST = 16
POOL_CHUNK = 1024


@dataclass(frozen=True)
class Placement:
    selector: str
    record_name: str
    lookup_name: str = ""  # CNAME modes: the name receivers query
    notice: str = ""
    notice_code: Reason | None = None


@dataclass(frozen=True)
class Deferral:
    """Why a key cannot be placed yet: the notice status shows, and its code."""

    notice: str
    code: Reason


@dataclass(frozen=True)
class _Todo:
    ident: IdentityState
    policy: Policy
    placement: Placement
    key_id: str


class Generation:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def generate(
        self,
        idents: list[IdentityState],
        now: datetime,
        report: TickReport,
        between: Callable[[list[str], bool], None] | None = None,
        pooled_only: bool = False,
    ) -> None:
        """New keys for every identity due: taken from the key pool, or generated in the
        worker pool when there are many RSA keys, and recorded chunk by chunk as they come
        back, so that progress survives a crash and `between` (the lifecycle's next pass)
        moves the first keys on while the rest are made. `between` is given the chunk's
        key ids and whether they came from the pool: pooled keys are all ready at once, so
        only the chunk's publication is worth doing before the next chunk. `pooled_only`: only the
        identities the key pool has keys for get one; the others are left as they are."""
        todo: list[_Todo] = []
        for ident in idents:
            if ident.pending_key is not None:  # a key is already on its way
                continue
            try:
                policy = self.ctx.policy(ident.policy)
            except RotatorError as exc:
                # One identity's missing policy file defers that identity, nobody else.
                retry_at = now + DEFAULT_RETRY_MAX
                self.ctx.recorder.defer(ident, now, retry_at, str(exc), Reason.POLICY_UNAVAILABLE)
                continue
            try:
                placement = self.place(ident, policy, now)
            except Exception as exc:
                why = f"internal error: {type(exc).__name__}: {exc}"
                self.ctx.recorder.defer(ident, now, now + policy.retry_max, why, Reason.INTERNAL)
                continue
            if isinstance(placement, Deferral):
                self._defer(ident, policy, now, placement)
                continue
            todo.append(_Todo(ident, policy, placement, uuid.uuid4().hex[:16]))
        if not todo:
            return
        pooled = self._from_pool(todo)
        todo = [replace(t, key_id=pooled[i][0]) if i in pooled else t for i, t in enumerate(todo)]
        refused: list[bool] = []  # set once an append is refused: generate nothing more

        def chunks() -> Iterator[tuple[list[tuple[int, GeneratedKey]], bool]]:
            """(chunk, whether it is pooled): the pooled keys, a few
            first (their records can be on their way at once), then POOL_CHUNK at a
            time; then the rest as the workers make them."""
            taken = [(i, gen) for i, (_, gen) in pooled.items()]
            # a first chunk on its own only where a batch goes out in rounds anyway
            # (UPDATEs): where a batch is one change, a chunk ahead would add a round
            rounds = all(self.ctx.publisher.in_rounds(todo[i].ident.zone) for i, _ in taken)
            start, size = 0, POOL_FIRST if rounds else len(taken)
            while start < len(taken):
                yield taken[start : start + size], True
                start, size = start + size, POOL_CHUNK
            if refused or pooled_only:
                return
            rest = [i for i in range(len(todo)) if i not in pooled]
            specs = [(todo[i].key_id, todo[i].policy.algorithm, todo[i].policy.bits) for i in rest]
            for chunk in self._generated(specs):
                yield [(rest[j], gen) for j, gen in chunk], False

        recorded: set[int] = set()
        made = chunks()
        try:
            for chunk, from_pool in made:
                faults.point("after-key-written")
                events = [self._event(todo[i], gen, now, i in pooled) for i, gen in chunk]
                try:
                    self.ctx.recorder.append(events)
                except (ConcurrencyError, IllegalTransition):
                    # never recorded: must not outlive this call (nor must the rest)
                    refused.append(True)
                    for i, _ in [*chunk, *(pair for rest, _ in made for pair in rest)]:
                        self.ctx.keystore.destroy(todo[i].key_id)
                    raise
                recorded |= {i for i, _ in chunk}
                report.generated += len(events)
                if between is not None:
                    between([todo[i].key_id for i, _ in chunk], from_pool)
        except ExternalError as exc:
            # the key store cannot take keys (disk full, read-only): each identity still
            # waiting says so, and is looked at again after its policy's retry base
            for i, t in enumerate(todo):
                if i not in recorded:
                    if i in pooled:  # taken from the pool but never recorded: no orphan
                        self.ctx.keystore.destroy(t.key_id)
                    why = f"cannot generate a key: {exc.reason}"
                    retry_at = now + t.policy.retry_base
                    self.ctx.recorder.defer(t.ident, now, retry_at, why, Reason.KEYSTORE)

    def keygen(self, specs: list[tuple[str, str, int]]) -> list[GeneratedKey]:
        """Generate keys (in the worker pool when it is worth it), in the order given."""
        got = dict(pair for chunk in self._generated(specs) for pair in chunk)
        return [got[i] for i in range(len(specs))]

    def _generated(
        self, specs: list[tuple[str, str, int]]
    ) -> Iterator[list[tuple[int, GeneratedKey]]]:
        """(index into specs, key) in chunks, in the order the keys are ready."""
        pool = self.ctx.pool
        rsa = sum(1 for _, algorithm, _ in specs if algorithm == "rsa")
        # ed25519 keys take microseconds: only RSA is worth the worker processes
        if pool is None or rsa < PARALLEL_KEYGEN or pool.workers < 2:
            chunk: list[tuple[int, GeneratedKey]] = []
            started = time.monotonic()
            for i, spec in enumerate(specs):
                chunk.append((i, self.ctx.keystore.generate(*spec)))
                if len(chunk) >= CHUNK and time.monotonic() - started >= MIN_CHUNK_S:
                    yield chunk
                    chunk, started = [], time.monotonic()
            if chunk:
                yield chunk
            return
        executor = pool.executor()
        futures = {
            executor.submit(self.ctx.keystore.generate, *spec): i for i, spec in enumerate(specs)
        }
        chunk = []
        started = time.monotonic()
        try:
            for future in as_completed(futures):
                chunk.append((futures[future], future.result()))
                if len(chunk) >= CHUNK and time.monotonic() - started >= MIN_CHUNK_S:
                    yield chunk
                    chunk, started = [], time.monotonic()
            if chunk:
                yield chunk
        finally:
            for future in futures:
                future.cancel()

    def _cname_ready(self, selector: str, domain: str, zone: str) -> bool:
        """Does the customer's pre-created CNAME for `selector` point at its record? (One
        that cannot be looked up now counts as not ready: at worst an early notice.)"""
        try:
            target = self.ctx.probe.cname(lookup_name(selector, domain))
        except ExternalError:
            return False
        return target == cname_target(selector, domain, zone)

    def _from_pool(self, todo: list[_Todo]) -> dict[int, tuple[str, GeneratedKey]]:
        """Pooled keys for as many of `todo` as the pool has, by index into it."""
        pool = self.ctx.keypool
        out: dict[int, tuple[str, GeneratedKey]] = {}
        if pool is None or not self.ctx.pool_sizes:
            return out
        kinds: dict[tuple[str, int], list[int]] = {}
        for i, t in enumerate(todo):
            kinds.setdefault((t.policy.algorithm, t.policy.bits), []).append(i)
        for (algorithm, bits), indices in kinds.items():
            for i, key in zip(indices, pool.take(algorithm, bits, len(indices)), strict=False):
                out[i] = key
        return out

    @staticmethod
    def _event(t: _Todo, gen: GeneratedKey, now: datetime, pooled: bool) -> ev.KeyGenerated:
        ident, policy, place, key_id = t.ident, t.policy, t.placement, t.key_id
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
            notice_code=place.notice_code,
            pooled=pooled,
        )

    def place(self, ident: IdentityState, policy: Policy, now: datetime) -> Placement | Deferral:
        """Where the next key of `ident` goes, or why there cannot be one yet."""
        store, domain = self.ctx.store, ident.domain
        if ident.mode == Mode.CUSTOMER_KEY:
            active = store.key(ident.active_key) if ident.active_key else None
            age = f" ({active.selector} active since {active.since:%Y-%m-%d})" if active else ""
            return Deferral(
                f"rotation needed from customer{age}: import their new key with "
                "`rotator customer import-key`",
                Reason.CUSTOMER_KEY_NEEDED,
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
            busy_slots = ", ".join(sorted(busy))
            return Deferral(
                f"no free ping-pong slot: {busy_slots} still in use", Reason.NO_FREE_SLOT
            )
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

    def _next_cname(self, ident: IdentityState, policy: Policy) -> Placement | Deferral:
        domain, esp = ident.domain, policy.esp
        used = [selector_seq(k.selector, esp) for k in self.ctx.store.list_keys(ident.identity)]
        n = max([x for x in used if x is not None], default=0) + 1
        if n > policy.cname_count:
            return Deferral(
                f"awaiting customer DNS: all {policy.cname_count} pre-created CNAMEs are "
                "used; the customer must add the next ones (`rotator customer check`)",
                Reason.AWAITING_CUSTOMER_DNS,
            )
        selector = f"{esp}{n}"
        # only the next warn_below CNAMEs matter (are fewer than that left?): a bounded
        # number of lookups, whatever [cname].count is
        ahead = range(n + 1, min(policy.cname_count, n + policy.cname_warn_below) + 1)
        left = sum(1 for m in ahead if self._cname_ready(f"{esp}{m}", domain, ident.zone))
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
            Reason.CNAMES_RUNNING_LOW if notice else None,
        )

    def _defer(self, ident: IdentityState, policy: Policy, now: datetime, why: Deferral) -> None:
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
        self.ctx.recorder.defer(ident, now, retry_at, why.notice, why.code)
