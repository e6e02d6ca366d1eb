"""`[[dns.backends]]`: where zones that are not on the `[dns]` primary are published. Each
kind is a model of its own (one module each); this module picks it by `kind` and turns its
first problem into one line naming the backend."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ...domain.declared import first_refusal, refuse
from .common import BackendConfig, BackendSettings
from .lexicon import LexiconSettings
from .powerdns import PowerDnsSettings
from .rfc2136 import Rfc2136Settings
from .route53 import Route53Settings
from .tinydns import TinydnsSettings
from .zonefile import ZoneFileSettings

__all__ = ["KINDS", "BackendConfig", "BackendSettings", "parse_backends"]

KINDS: dict[str, type[BackendSettings]] = {
    "rfc2136": Rfc2136Settings,
    "powerdns": PowerDnsSettings,
    "lexicon": LexiconSettings,
    "route53": Route53Settings,
    "tinydns": TinydnsSettings,
    "zonefile": ZoneFileSettings,
}


def parse_backends(value: Any) -> tuple[BackendSettings, ...]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise refuse("write each backend as a [[dns.backends]] table")
    out: list[BackendSettings] = []
    for i, raw in enumerate(value):
        name = raw.get("name")
        where = f"backend {name}" if isinstance(name, str) and name else f"backends[{i}]"
        kind = raw.get("kind")
        model = KINDS.get(kind) if isinstance(kind, str) else None
        if model is None:
            raise refuse(
                f"{where}: kind {kind!r} is not one rotator knows; use one of "
                f"{', '.join(sorted(KINDS))}"
            )
        try:
            out.append(model.model_validate(raw))
        except ValidationError as exc:
            r = first_refusal(exc, unknown_first=True)
            key = r.key if r.key is not None else ".".join(str(p) for p in r.loc)
            if r.kind == "unknown":
                known = ", ".join(sorted(model.model_fields))
                raise refuse(f"{where}: unknown setting {key!r}; use {known}") from None
            raise refuse(f"{where}: {key}: {r.problem}") from None
    names = [b.name for b in out]
    if len(set(names)) != len(names):
        raise refuse("two backends have the same name; give each its own")
    zones = [z for b in out for z in b.zones]
    twice = sorted({z for z in zones if zones.count(z) > 1})
    if twice:
        raise refuse(f"zone {twice[0]} is given to two backends; give each zone to one")
    return tuple(out)
