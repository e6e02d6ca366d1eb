"""What every use case needs: the ports, the clock, the policies and the recording path."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ports import (
    Clock,
    DaemonLock,
    EventStore,
    KeyStore,
    NameserverProbe,
    PolicySource,
    Publisher,
    Signer,
    Workers,
)
from .recording import Recorder


@dataclass
class Context:
    store: EventStore
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
    recorder: Recorder = field(init=False)

    def __post_init__(self) -> None:
        self.esp_nameservers = frozenset(n.rstrip(".").lower() for n in self.esp_nameservers)
        self.recorder = Recorder(self.store, self.policy, self.clock, self.origin)
