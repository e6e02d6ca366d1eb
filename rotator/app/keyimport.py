"""Customer-generated keys (customer-key mode): the customer gives the selector and the
private key; rotator checks the key (RFC 8301), stores its own re-serialised copy, waits
until the customer's DNS serves it, then signs with it. A pending import can be cancelled."""

from __future__ import annotations

import base64
import hashlib
import uuid

from ..domain import events as ev
from ..domain import selector as sel
from ..domain.errors import InputError, RotatorError
from ..domain.model import IdentityState, KeyState
from ..domain.names import check_dns_name, lookup_name, normalize_domain
from ..domain.record import RecordTags, build_record
from ..domain.states import Mode
from .context import Context
from .recording import by_operator, key_ids


class KeyImport:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def _identity(self, domain: str) -> IdentityState:
        domain = normalize_domain(domain)
        ident = self.ctx.store.identity(domain)
        if ident is None or ident.mode != Mode.CUSTOMER_KEY:
            raise InputError(
                f"{domain} is not a customer-key customer; add it with "
                "`rotator customer add NAME --domain D --mode customer-key`"
            )
        return ident

    def import_key(
        self, domain: str, selector: str, pem: bytes, actor: str, reason: str = ""
    ) -> KeyState:
        store, keystore = self.ctx.store, self.ctx.keystore
        ident = self._identity(domain)
        if ident.pending_key is not None:
            raise InputError(
                f"{ident.domain} already has a key waiting for verification; cancel it with "
                f"`rotator customer cancel-import {ident.domain}`"
            )
        selector = sel.validate_selector(selector.lower())
        check_dns_name(lookup_name(selector, ident.domain), "record name")
        if selector in store.selectors(ident.domain):
            raise InputError(f"selector {selector!r} was already used for {ident.domain}")
        algorithm, bits, material, clean = keystore.customer_key(pem)
        policy = self.ctx.policy(ident.policy)
        if algorithm != policy.algorithm:
            raise InputError(
                f"the key is {algorithm}, but policy {policy.name!r} signs with "
                f"{policy.algorithm}; ask the customer for a {policy.algorithm} key"
            )
        key_id = uuid.uuid4().hex[:16]
        record = build_record(algorithm, base64.b64encode(material).decode(), RecordTags())
        event = ev.KeyImported(
            at=self.ctx.clock.now(),
            actor=actor,
            reason=reason,
            key_id=key_id,
            identity=ident.identity,
            domain=ident.domain,
            selector=selector,
            policy=policy.name,
            algorithm=algorithm,
            bits=bits,
            fingerprint=hashlib.sha256(material).hexdigest(),
            zone=ident.zone,
            record_name=lookup_name(selector, ident.domain),
            record=record,
            ttl=policy.ttl,
            replaces=ident.active_key,
        )
        keystore.write(key_id, clean)  # our own PKCS#8, never the customer's bytes
        try:
            result = self.ctx.recorder.append([event])
        except RotatorError:
            keystore.destroy(key_id)
            raise
        return result.keys[key_id]

    def cancel(self, domain: str, actor: str, reason: str) -> KeyState:
        """Give up the import still waiting for the customer's DNS (its private key is
        wiped on the next tick); the active key, if any, keeps signing."""
        ident = self._identity(domain)
        pending = self.ctx.store.key(ident.pending_key) if ident.pending_key else None
        if pending is None:
            raise InputError(f"{ident.domain} has no imported key waiting; nothing to cancel")
        now = self.ctx.clock.now()
        withdrawn = ev.KeyWithdrawn(**by_operator(key_ids(pending, now), actor, reason))
        return self.ctx.recorder.append([withdrawn], [pending]).keys[pending.key_id]
