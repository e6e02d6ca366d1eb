"""What every use case needs: the ports, the clock, the policies and the recording path."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..ports import (
    Clock,
    DaemonLock,
    EventAppender,
    KeyPool,
    KeyStore,
    LeaderWork,
    ListRows,
    NameserverProbe,
    OverviewReader,
    PolicySource,
    ProjectionReader,
    Publisher,
    RowBuffer,
    Signer,
    SigningSetSource,
    StoreCounter,
    StreamReader,
    Unfenced,
    WebhookVault,
    Workers,
)
from .recording import Recorder


class Store(
    EventAppender,
    StreamReader,
    ProjectionReader,
    OverviewReader,
    StoreCounter,
    SigningSetSource,
    Protocol,
):
    """The store roles the use cases take on: every one but the audit chain's."""


@dataclass
class Context:
    store: Store
    policy: PolicySource
    publisher: Publisher
    probe: NameserverProbe
    keystore: KeyStore
    signer: Signer
    clock: Clock
    lock: DaemonLock | None = None  # None: nothing else may run the lifecycle (tests)
    # The ESP's DKIM nameserver names (config dns.esp_nameservers): what customers delegate
    # to. Empty: read from each zone's own NS records.
    esp_nameservers: frozenset[str] = frozenset()
    pool: Workers | None = None  # worker processes for key generation (None: in-process)
    origin: str = ""  # an operator command's real uid (see Event.origin); "" in the daemon
    customer_check_s: float = 10.0  # the deadline of one customer's DNS checks
    # safety valve: a tick or command may touch at most this share of the active keys
    # (never fewer than safety_min_keys) without an operator's release or --yes
    safety_max_share: float = 0.25
    safety_min_keys: int = 10
    keypool: KeyPool | None = None  # pre-generated keys ([key] pool in a policy)
    # (algorithm, bits) -> how many keys the pool keeps: the largest [key] pool of the
    # policies of that kind
    pool_sizes: dict[tuple[str, int], int] = field(default_factory=dict)
    # where the signing set last written is kept for the next change to patch (a private
    # temp file in the daemon: a million rows)
    row_buffer: Callable[[], RowBuffer] = ListRows
    # webhook subscriptions' secrets and delivery cursors (None: no webhooks here)
    webhook_vault: WebhookVault | None = None
    # whether this process may still do leader work (the daemon's lease keeper); checked
    # before each pass of a tick and each signer write
    leader: LeaderWork = field(default_factory=Unfenced)
    recorder: Recorder = field(init=False)

    def __post_init__(self) -> None:
        self.esp_nameservers = frozenset(n.rstrip(".").lower() for n in self.esp_nameservers)
        self.recorder = Recorder(self.store, self.policy, self.clock, self.origin)
