"""Composition root: the config becomes adapters, a Context and the typed App that the CLI
and the daemon both use."""

from __future__ import annotations

from .adapters.dns_rfc2136 import Rfc2136Publisher
from .adapters.keystore_fs import FsKeyStore
from .adapters.lock import FlockDaemonLock
from .adapters.probe import AuthoritativeProbe
from .adapters.signer_opendkim import OpenDkimSigner
from .adapters.store_sqlite import SqliteEventStore, open_store
from .app import Application, Context
from .config import Config
from .policies import PolicySet
from .timeutil import SystemClock


class App(Application):
    """The application plus what it was built from."""

    def __init__(
        self, config: Config, policies: PolicySet, store: SqliteEventStore, ctx: Context
    ) -> None:
        super().__init__(ctx)
        self.config = config
        self.policies = policies
        self.store: SqliteEventStore = store


def build(config: Config) -> App:
    policies = PolicySet(config.policy_dir)
    store = open_store(config.database)
    dns = config.dns
    publisher = Rfc2136Publisher(
        server=dns.primary,
        port=dns.primary_port,
        tsig_name=dns.tsig_name,
        tsig_secret=dns.tsig_secret,
        tsig_algorithm=dns.tsig_algorithm,
        timeout=dns.timeout,
    )
    probe = AuthoritativeProbe(
        port=dns.nameserver_port,
        timeout=dns.timeout,
        nameservers=dns.nameservers,
        resolver=dns.resolver,
    )
    signer = OpenDkimSigner(
        config.signer.key_table, config.signer.signing_table, config.signer.reload
    )
    ctx = Context(
        store=store,
        policy=policies.get,
        publisher=publisher,
        probe=probe,
        keystore=FsKeyStore(config.key_dir),
        signer=signer,
        clock=SystemClock(),
        lock=FlockDaemonLock(config.database),
        esp_nameservers=frozenset(dns.esp_nameservers),
    )
    return App(config, policies, store, ctx)
