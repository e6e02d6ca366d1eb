"""The publisher the config describes: the `[dns]` primary as the default backend, and a
backend per `[[dns.backends]]` entry, behind one router."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ...config.backends import BackendConfig
from ...config.backends.common import read_secret
from ...config.backends.rfc2136 import Rfc2136Config
from ...config.dns import DnsConfig, load_tsig_secret
from ...domain.errors import ConfigError, PublishError
from ...ports import Publisher, ZoneChanges
from . import lexicon, powerdns, route53
from .rfc2136 import Rfc2136Publisher
from .router import Route, ZoneRouter
from .tinydns import from_config as tinydns
from .zonefile import from_config as zonefile


def _rfc2136(cfg: BackendConfig) -> Publisher:
    assert isinstance(cfg, Rfc2136Config)
    return Rfc2136Publisher(
        server=cfg.primary,
        port=cfg.port,
        tsig_name=cfg.tsig_name,
        tsig_secret=read_secret(cfg.tsig_secret_file, f"backend {cfg.name}: the TSIG secret"),
        tsig_algorithm=cfg.tsig_algorithm,
        timeout=cfg.timeout,
    )


BUILDERS: dict[str, Callable[[BackendConfig], Publisher]] = {
    "rfc2136": _rfc2136,
    "powerdns": powerdns.from_config,
    "lexicon": lexicon.from_config,
    "route53": route53.from_config,
    "tinydns": tinydns,
    "zonefile": zonefile,
}


def build_publisher(dns: DnsConfig) -> ZoneRouter:
    default: Publisher | None = None
    if dns.primary is not None:
        default = Rfc2136Publisher(
            server=dns.primary,
            port=dns.primary_port,
            tsig_name=dns.tsig_name,
            tsig_secret=load_tsig_secret(dns),
            tsig_algorithm=dns.tsig_algorithm,
            timeout=dns.timeout,
        )
    routes = []
    for cfg in dns.backends:
        build = BUILDERS.get(cfg.kind)
        if build is None:  # a kind whose settings load but whose adapter is not installed
            raise ConfigError(f"backend {cfg.name}: kind {cfg.kind!r} cannot be used here")
        routes.append(Route(cfg.name, cfg.zones, build(cfg)))
    return ZoneRouter(routes, default)


def zone_nameservers(dns: DnsConfig) -> list[tuple[str, tuple[str, ...]]]:
    """(zone suffix, addresses) of every backend that names where its zones are verified."""
    return [(zone, b.nameservers) for b in dns.backends if b.nameservers for zone in b.zones]


class NoPublisher:
    """The publisher of a read-only command: it holds no TSIG secret and sends nothing."""

    def publish(self, batch: Sequence[ZoneChanges]) -> list[str | PublishError]:
        return [PublishError("this command is read-only: it sends no DNS updates") for _ in batch]

    def zone_problem(self, zone: str) -> str | None:
        return None

    def serves(self, zone: str) -> bool:
        return True

    def in_rounds(self, zone: str) -> bool:
        return False
