"""Composition root: the config becomes adapters, a Context and the typed App that the CLI
and the daemon both use."""

from __future__ import annotations

import dataclasses
import os
import pwd
from collections.abc import Callable, Sequence
from pathlib import Path

from .adapters.dns.probe import AuthoritativeProbe
from .adapters.dns.rfc2136 import Rfc2136Publisher
from .adapters.idempotency.sqlite import SqliteIdempotencyKeys, replies_path
from .adapters.keys.files import MAX_PEM, FsKeyStore
from .adapters.keys.pool import FsKeyPool
from .adapters.runtime.lock import FlockDaemonLock
from .adapters.runtime.workers import WorkerPool
from .adapters.signers.fleet import SignerFleet
from .adapters.signers.probing.prober import Prober
from .adapters.signers.target import SignerTarget, key_reader
from .adapters.store.anchor import Anchor
from .adapters.store.row_spool import FileRows
from .adapters.store.seal import Sealer, load_key
from .adapters.store.sqlite import SqliteEventStore, db_hint, has_sealed_events, open_store
from .adapters.webhooks.sender import HttpSender
from .adapters.webhooks.vault import FileVault
from .app import (
    SCOPES,
    Application,
    Context,
    CustomerRow,
    Deliveries,
    DeliverySettings,
    OnboardingRequest,
    Scope,
    Subscription,
    Token,
    Tokens,
)
from .app.customer_dns import txt_line
from .app.onboarding import CSV_COLUMNS, CSV_REQUIRED
from .app.recording import Recorder
from .app.rotation import Requested
from .app.webhooks import PUBLIC_TYPES
from .config.dns import load_tsig_secret
from .config.policies import PolicySet
from .config.settings import Config
from .domain import events as ev
from .domain.errors import ConfigError, PublishError
from .ports import Appended, EventStore, IdempotencyKeys, Publisher, RecordChange
from .timeutil import SystemClock

# The CLI reaches the app and the adapters only through this module: besides the App, it
# gets the requests and answers it renders and the limits and hints it words errors with.
__all__ = [
    "CSV_COLUMNS",
    "CSV_REQUIRED",
    "MAX_PEM",
    "SCOPES",
    "WEBHOOK_TYPES",
    "App",
    "CustomerRow",
    "OnboardingRequest",
    "Requested",
    "Scope",
    "Subscription",
    "Token",
    "Tokens",
    "build",
    "db_hint",
    "txt_line",
]

WEBHOOK_TYPES = tuple(PUBLIC_TYPES)  # the event types a webhook may subscribe to


class App(Application):
    """The application plus what it was built from."""

    def __init__(
        self,
        config: Config,
        policies: PolicySet,
        store: EventStore,
        ctx: Context,
        open_reader: Callable[[], EventStore],
        open_writer: Callable[[], EventStore] | None = None,
    ) -> None:
        super().__init__(ctx)
        self.config = config
        self.policies = policies
        self.store: EventStore = store
        # a second, read-only connection to the same log (the metrics scrapes read on it)
        self.open_reader = open_reader
        # another writing connection, for a thread beside the tick's (webhooks parking)
        self.open_writer = open_writer
        self._idempotency: IdempotencyKeys | None = None
        self._readers: list[EventStore] = []

    def idempotency_keys(self) -> IdempotencyKeys:
        """The API's Idempotency-Key replies, beside the database (opened on first use:
        only the API needs them)."""
        if self._idempotency is None:
            self._idempotency = SqliteIdempotencyKeys(replies_path(self.config.database))
        return self._idempotency

    def tokens_apart(self) -> Tokens:
        """Tokens checked on a read-only connection of their own (the API's): a request's
        token check then never waits behind a write on this App's connection, whose
        commit waits on fsync."""
        reader = self.open_reader()
        self._readers.append(reader)
        return Tokens(dataclasses.replace(self.ctx, store=reader))

    def deliveries(self) -> Deliveries:
        """The webhook couriers, reading on connections of their own (not started)."""
        vault = self.ctx.webhook_vault
        assert vault is not None and self.open_writer is not None
        open_writer = self.open_writer

        def record(events: Sequence[ev.Event]) -> Appended:
            # parking is rare: a connection for it alone, never the tick's
            store = open_writer()
            try:
                return Recorder(store, self.ctx.policy, self.ctx.clock).append(events)
            finally:
                store.close()

        w = self.config.webhooks
        return Deliveries(
            self.open_reader,
            HttpSender(),
            vault,
            DeliverySettings(retry=w.retry, timeout=w.timeout, poll=w.poll),
            record,
            self.ctx.clock,
        )

    def close(self) -> None:
        """Stop the worker processes and close the database."""
        if self.ctx.pool is not None:
            self.ctx.pool.shutdown()
        if self._idempotency is not None:
            self._idempotency.close()
        for reader in self._readers:
            reader.close()
        self.store.close()


class NoPublisher:
    """The publisher of a read-only command: it holds no TSIG secret and sends nothing."""

    def apply(self, zone: str, changes: Sequence[RecordChange]) -> str:
        raise PublishError("this command is read-only: it sends no DNS updates")

    def zone_problem(self, zone: str) -> str | None:
        return None


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def origin() -> str:
    """`uid=1000(alice)`, plus ` sudo=bob` when run through sudo: recorded beside the
    --actor a command claims."""
    uid = os.getuid()
    text = f"uid={uid}({user_name(uid)})"
    sudo = os.environ.get("SUDO_USER")
    if sudo and sudo.isprintable() and len(sudo) <= 64:
        text += f" sudo={sudo}"
    return text


def check_owner(paths: Sequence[Path]) -> None:
    """Writing commands run as the owner of the state: files another user (root, say)
    creates in it would lock the daemon out of its own database and keys."""
    me = os.geteuid()
    for path in paths:
        try:
            owner = path.stat().st_uid
        except FileNotFoundError:
            continue
        if owner != me:
            name = user_name(owner)
            raise ConfigError(
                f"{path} belongs to {name}, but this command runs as {user_name(me)}: run it "
                f"as {name} (e.g. `sudo -u {name} rotator ...`) so that the daemon can still "
                "use every file it writes"
            )


def sealer_for(config: Config, readonly: bool) -> Sealer | None:
    """The audit key. A writer makes it when nothing shows the log was sealed; a reader
    that cannot read it checks no MACs (`audit verify` insists, see the CLI)."""
    path = config.audit.key_file
    if readonly:
        try:
            return Sealer(load_key(path, create=False))
        except ConfigError:
            return None
    # a log that was sealed (its events, its head, or the anchor say so) needs its own key
    # back, never a new one; a key made now may seal a log that never was
    sealed = has_sealed_events(config.database) or Anchor(config.audit.anchor).keyed()
    made = not os.path.lexists(path)
    return Sealer(load_key(path, create=not sealed), new=made)


def build(
    config: Config, readonly: bool = False, command: bool = True, via: str | None = None
) -> App:
    """`command`: an operator's command (its events carry its real uid), not the daemon.
    `via`: the origin its events carry instead (the API's "api")."""
    policies = PolicySet(config.policy_dir)
    if not readonly:
        check_owner([config.database, config.key_dir])
    sealer = sealer_for(config, readonly)
    store = open_store(
        config.database,
        readonly=readonly,
        sealer=sealer,
        anchor=None
        if readonly and not config.audit.anchor.exists()
        else Anchor(config.audit.anchor),
    )
    dns = config.dns
    publisher: Publisher = NoPublisher()
    if not readonly:
        publisher = Rfc2136Publisher(
            server=dns.primary,
            port=dns.primary_port,
            tsig_name=dns.tsig_name,
            tsig_secret=load_tsig_secret(dns),
            tsig_algorithm=dns.tsig_algorithm,
            timeout=dns.timeout,
        )
    probe = AuthoritativeProbe(
        port=dns.nameserver_port,
        timeout=dns.timeout,
        nameservers=dns.nameservers,
        resolver=dns.resolver,
    )
    keystore = FsKeyStore(config.key_dir)
    pool_sizes: dict[tuple[str, int], int] = {}
    for policy in policies.policies.values():
        kind = (policy.algorithm, policy.bits)
        pool_sizes[kind] = max(pool_sizes.get(kind, 0), policy.pool)
    read_key = key_reader(keystore.path)
    signer = SignerFleet(
        [SignerTarget(t, read_key, Prober(t.probe, probe.observe)) for t in config.targets],
        config.database.with_name(config.database.name + ".signer-lock"),
    )
    ctx = Context(
        store=store,
        policy=policies.get,
        publisher=publisher,
        probe=probe,
        keystore=keystore,
        signer=signer,
        clock=SystemClock(),
        lock=FlockDaemonLock(config.database),
        esp_nameservers=frozenset(dns.esp_nameservers),
        pool=None if readonly else WorkerPool(),
        origin=via if via is not None else origin() if command else "",
        customer_check_s=3 * dns.timeout,
        keypool=FsKeyPool(keystore),  # reading it (status) writes nothing
        pool_sizes={kind: n for kind, n in pool_sizes.items() if n > 0},
        safety_max_share=config.safety.max_share,
        safety_min_keys=config.safety.min_keys,
        row_buffer=FileRows,
        webhook_vault=FileVault(config.database),
    )
    return App(
        config,
        policies,
        store,
        ctx,
        lambda: SqliteEventStore(config.database, readonly=True, sealer=sealer),
        None
        if readonly
        else lambda: open_store(config.database, sealer=sealer, anchor=Anchor(config.audit.anchor)),
    )
