"""Composition root: the config becomes adapters, a Context and the typed App that the CLI
and the daemon both use."""

from __future__ import annotations

import dataclasses
import os
import pwd
from collections.abc import Callable, Sequence
from pathlib import Path

from .adapters.dns.factory import NoPublisher, build_publisher, zone_nameservers
from .adapters.dns.probe import AuthoritativeProbe
from .adapters.idempotency.sqlite import SqliteIdempotencyKeys
from .adapters.keys.files import MAX_PEM
from .adapters.keys.opening import key_stores, make_kek, rewrap_keys
from .adapters.keys.sealed import Rewrapped, SealedKeyStore
from .adapters.runtime.leadership import SoleLeadership
from .adapters.runtime.workers import WorkerPool
from .adapters.signers.fleet import SignerFleet
from .adapters.signers.probing.prober import Prober
from .adapters.signers.target import SignerTarget, key_reader
from .adapters.store.anchor import Anchor
from .adapters.store.opening import (
    DATABASE_ERRORS,
    db_hint,
    has_sealed_events,
    node_lock,
    open_leadership,
    open_store,
    shared_signer_lock,
)
from .adapters.store.postgres.migrate import Migrated
from .adapters.store.postgres.migrate import migrate as copy_log
from .adapters.store.row_spool import FileRows
from .adapters.store.seal import Sealer, load_key
from .adapters.store.sqlite import open_store as open_sqlite
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
from .app.leading import LeaderLock
from .app.onboarding import CSV_COLUMNS, CSV_REQUIRED
from .app.recording import Recorder
from .app.rotation import Requested
from .app.webhooks import PUBLIC_TYPES
from .config.database import Database, is_url, redact
from .config.policies import PolicySet
from .config.settings import Config
from .domain import events as ev
from .domain.errors import ConfigError, InputError
from .ports import (
    Appended,
    DaemonLock,
    EventStore,
    IdempotencyKeys,
    Leader,
    Leadership,
    Lease,
    Publisher,
)
from .timeutil import SystemClock

# The CLI reaches the app and the adapters only through this module: besides the App, it
# gets the requests and answers it renders and the limits and hints it words errors with.
__all__ = [
    "CSV_COLUMNS",
    "CSV_REQUIRED",
    "DATABASE_ERRORS",
    "MAX_PEM",
    "SCOPES",
    "WEBHOOK_TYPES",
    "App",
    "CustomerRow",
    "OnboardingRequest",
    "Requested",
    "Rewrapped",
    "Scope",
    "Subscription",
    "Token",
    "Tokens",
    "build",
    "db_hint",
    "make_kek",
    "migrate",
    "redact",
    "rewrap_keys",
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
        leadership: Leadership | None = None,
    ) -> None:
        super().__init__(ctx)
        self.config = config
        # who leads among the daemons on this database (a connection of its own, opened
        # when first asked)
        self.leadership: Leadership = leadership or SoleLeadership()
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
            self._idempotency = SqliteIdempotencyKeys(self.config.database.side(".api-idempotency"))
        return self._idempotency

    def tokens_apart(self) -> Tokens:
        """Tokens checked on a read-only connection of their own (the API's): a request's
        token check then never waits behind a write on this App's connection, whose
        commit waits on fsync."""
        reader = self.open_reader()
        self._readers.append(reader)
        return Tokens(dataclasses.replace(self.ctx, store=reader))

    def deliveries(self, lease: Lease | None = None) -> Deliveries:
        """The webhook couriers, reading on connections of their own (not started); what
        they record is leader work under `lease`."""
        vault = self.ctx.webhook_vault
        assert vault is not None and self.open_writer is not None
        open_writer = self.open_writer

        def record(events: Sequence[ev.Event]) -> Appended:
            # parking is rare: a connection for it alone, never the tick's
            store = open_writer()
            store.fence(lease)
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

    def keys_summary(self) -> str | None:
        """Where keys are sealed, under which KEK, and how many (None: key_dir is the
        store). Reads the key database: `init` fails here when it is out of reach."""
        keystore = self.ctx.keystore
        if not isinstance(keystore, SealedKeyStore):
            return None
        count = len(keystore.sealed.ids())
        kek = keystore.envelope.kek.id
        return f"sealed in {self.config.keys.shown} under KEK {kek} ({count} keys)"

    def leader(self) -> Leader | None:
        """Who leads the daemons sharing the database (None: one node only, or none ever
        led). StoreError when the database cannot be read."""
        return self.leadership.current() if self.leadership.shared else None

    def close(self) -> None:
        """Stop the worker processes and close the database."""
        self.leadership.close()
        if self.ctx.pool is not None:
            self.ctx.pool.shutdown()
        if isinstance(self.ctx.keystore, SealedKeyStore):
            self.ctx.keystore.close()
        if self._idempotency is not None:
            self._idempotency.close()
        for reader in self._readers:
            reader.close()
        self.store.close()


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
    db = config.database
    if not readonly:
        # the state every writer touches: the SQLite file, or (PostgreSQL) the anchor; and
        # the keys' own SQLite file when they are sealed in one
        owned = [db.path or config.audit.anchor, config.key_dir]
        if isinstance(config.keys.database, Path):
            owned.append(config.keys.database)
        check_owner(owned)
    sealer = sealer_for(config, readonly)
    leadership = open_leadership(db, config.leadership.lease, config.leadership.renew)
    store = open_store(
        db,
        readonly=readonly,
        sealer=sealer,
        anchor=None
        if readonly and not config.audit.anchor.exists()
        else Anchor(config.audit.anchor),
    )
    dns = config.dns
    publisher: Publisher = NoPublisher() if readonly else build_publisher(dns)
    probe = AuthoritativeProbe(
        port=dns.nameserver_port,
        timeout=dns.timeout,
        nameservers=dns.nameservers,
        resolver=dns.resolver,
        zone_nameservers=zone_nameservers(dns),
    )
    keystore, keypool = key_stores(config, readonly)
    pool_sizes: dict[tuple[str, int], int] = {}
    for policy in policies.policies.values():
        kind = (policy.algorithm, policy.bits)
        pool_sizes[kind] = max(pool_sizes.get(kind, 0), policy.pool)
    read_key = key_reader(keystore.path)
    signer = SignerFleet(
        [SignerTarget(t, read_key, Prober(t.probe, probe.observe)) for t in config.targets],
        db.side(".signer-lock"),
        # names the daemon's lease while it leads (ctx, made below, holds the keeper then)
        shared=shared_signer_lock(db, lambda: ctx.leader.epoch()),
    )
    ctx = Context(
        store=store,
        policy=policies.get,
        publisher=publisher,
        probe=probe,
        keystore=keystore,
        signer=signer,
        clock=SystemClock(),
        lock=runtime_lock(config, leadership, store, command),
        esp_nameservers=frozenset(dns.esp_nameservers),
        pool=None if readonly else WorkerPool(),
        origin=via if via is not None else origin() if command else "",
        customer_check_s=3 * dns.timeout,
        keypool=keypool,  # reading it (status) writes nothing
        pool_sizes={kind: n for kind, n in pool_sizes.items() if n > 0},
        safety_max_share=config.safety.max_share,
        safety_min_keys=config.safety.min_keys,
        row_buffer=FileRows,
        webhook_vault=FileVault(db.files),
    )
    return App(
        config,
        policies,
        store,
        ctx,
        lambda: open_store(db, readonly=True, sealer=sealer),
        None
        if readonly
        else lambda: open_store(db, sealer=sealer, anchor=Anchor(config.audit.anchor)),
        leadership,
    )


def runtime_lock(
    config: Config, leadership: Leadership, store: EventStore, command: bool
) -> DaemonLock:
    """What keeps the lifecycle's work to one process: the daemon's lock (of its node, on
    a shared database), and a command's: the same flock on SQLite, the lease itself on a
    shared database (taken only while no daemon leads)."""
    lead = config.leadership
    if leadership.shared and command:
        return LeaderLock(leadership, f"{lead.node}:{os.getpid()}", lead.retry, store.fence)
    return node_lock(config.database, lead.node)


def migrate(config: Config, url: str) -> tuple[Migrated, list[tuple[Path, Path]]]:
    """`db migrate --to URL`: the config's SQLite log copied into the empty PostgreSQL
    database at `url`, with the daemon's lock held meanwhile (a running daemon is refused);
    and the files that go with the database, to be renamed for the new one in the same
    state directory (their names follow the database's)."""
    db = config.database
    if db.path is None:
        raise InputError(f"the database is {db} already; migrate moves an SQLite database")
    if not is_url(url):
        raise InputError(f"--to: {redact(url)!r} is not a postgresql:// URL")
    sealed = has_sealed_events(db) or Anchor(config.audit.anchor).keyed()
    try:
        sealer: Sealer | None = Sealer(load_key(config.audit.key_file, create=False))
    except ConfigError:
        if sealed:
            raise
        sealer = None
    anchor = Anchor(config.audit.anchor) if config.audit.anchor.exists() else None
    lock = node_lock(db, "")  # the SQLite file's flock
    lock.acquire()
    try:
        source = open_sqlite(db.path, readonly=True, sealer=sealer, anchor=anchor)
        try:
            migrated = copy_log(source, url, sealer, anchor)
        finally:
            source.close()
    finally:
        lock.release()
    target = Database(None, url, db.state_dir)
    moves = [
        (old, target.side(old.name.removeprefix(db.files.name)))
        for old in sorted(db.state_dir.glob(f"{db.files.name}.*"))
        if old.name != db.side(".lock").name  # the flock: PostgreSQL's lock is the server's
    ]
    return migrated, moves
