"""kind = "route53": Amazon Route 53's API through boto3 (an optional dependency:
`pip install 'rotator[route53]'`), tested against moto, an emulator of that API, not
against AWS."""

from __future__ import annotations

from ....config.backends import BackendConfig
from ....config.backends.route53 import Route53Config
from ....domain.errors import ConfigError
from ....ports import Publisher


def from_config(cfg: BackendConfig) -> Publisher:
    assert isinstance(cfg, Route53Config)
    try:  # here, not at import: rotator runs without boto3 when no backend is Route 53
        from .publisher import build
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in ("boto3", "botocore"):
            raise
        raise ConfigError(
            f"backend {cfg.name}: kind route53 needs boto3, which is not installed "
            f"({exc.name} is missing): pip install 'rotator[route53]'"
        ) from None
    return build(cfg)
