"""[leadership] in rotator.toml: the lease by which one daemon leads when several share a
PostgreSQL database (cert-manager's defaults: lease 60 s, renew 40 s, retry 15 s), and this
node's name. With SQLite the one daemon always leads and these only name the node."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import PlainValidator, model_validator

from ..domain.declared import Settings, refuse, setting
from .values import number

MAX_LEASE = 3600.0
_NODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


@dataclass(frozen=True)
class LeadershipConfig:
    node: str
    lease: float = 60.0  # a lease runs this long from its last renewal (the server's clock)
    renew: float = 40.0  # the leader stops leader work this long after its last renewal
    retry: float = 15.0  # how often the leader renews and a standby tries to take over


def _node(value: Any) -> str:
    if not isinstance(value, str) or (value and not _NODE.match(value)):
        raise refuse(
            f"{value!r}: a node name is letters, digits, dots, hyphens and underscores, "
            "up to 63, e.g. the host's name"
        )
    return value


class LeadershipSettings(Settings):
    UNKNOWN: ClassVar[str] = "unknown key"

    node: Annotated[str, PlainValidator(_node)] = setting(
        "",
        "this node's name: events recorded by its daemon carry it, `rotator status` and the "
        "metrics say which node leads; unique among the nodes sharing a database",
        "the host's name",
    )
    lease_seconds: Annotated[float, number(0, MAX_LEASE)] = setting(
        60.0,
        "with PostgreSQL: how long the leader's lease runs from its last renewal, on the "
        "database's clock; a standby takes over once it ran out",
    )
    renew_seconds: Annotated[float, number(0, MAX_LEASE)] = setting(
        40.0,
        "the leader stops all leader work (ticks, signer writes) when no renewal landed "
        "for this long; less than lease_seconds, the gap is the margin for its last step",
    )
    retry_seconds: Annotated[float, number(0, MAX_LEASE)] = setting(
        15.0,
        "how often the leader renews its lease and a standby tries to take it; less than "
        "renew_seconds",
    )

    @model_validator(mode="after")
    def _order(self) -> LeadershipSettings:
        if not self.retry_seconds < self.renew_seconds < self.lease_seconds:
            raise refuse(
                f"retry_seconds {self.retry_seconds:g} < renew_seconds {self.renew_seconds:g} "
                f"< lease_seconds {self.lease_seconds:g} must hold: the leader renews "
                "several times before it gives up, and gives up before its lease runs out",
                key="leadership",
            )
        return self

    def config(self) -> LeadershipConfig:
        node = self.node or socket.gethostname() or "rotator"
        return LeadershipConfig(node, self.lease_seconds, self.renew_seconds, self.retry_seconds)
