"""The key pool with the real daemon and a real BIND pair: filled in idle time and
recorded, then a new domain's key is a pooled one, published, verified on both servers,
active, and a signature made with it verifies against the nameservers."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rotator.demo.localdns import BindPair

from .conftest import DOMAIN, POLICIES
from .rotatorenv import RotatorEnv, sign

pytestmark = pytest.mark.integration


def log(env: RotatorEnv, *args: str) -> list[dict[str, object]]:
    return [json.loads(x) for x in env.cli("log", "--json", *args).stdout.splitlines()]


POOLED = """
[key]
algorithm = "rsa"
bits = 2048
pool = 4
[rotation]
interval = "1h"
[dns]
ttl = 2
[selector]
template = "p{hh}{mi}{ss}.{esp}"
[retry]
base = "0.5s"
max = "4s"
"""


@pytest.fixture
def env(tmp_path: Path, bind_factory: Callable[..., BindPair]) -> Iterator[RotatorEnv]:
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies)
    (policies / "demo-pool.toml").write_text(POOLED)
    for p in [policies, *policies.iterdir()]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    renv = RotatorEnv(tmp_path, bind_factory(tmp_path / "bind", zones=(DOMAIN,)), policies)
    try:
        yield renv
    finally:
        renv.close()


@pytest.mark.timeout(180)
def test_a_new_domain_takes_a_pooled_key(env: RotatorEnv) -> None:
    env.cli("domain", "add", DOMAIN, "--policy", "demo-pool")
    env.start()
    env.wait_for("first key active", lambda: env.key_in_state(DOMAIN, "active"), 60)
    pooled = env.wait_for(
        "the pool filled",
        lambda: (p := log(env, "--type", "PoolKeyAdded")) and len(p) >= 4 and p,
        60,
    )
    assert "key pool: rsa-2048 4 of 4" in env.cli("status").stdout
    shop = f"shop.{DOMAIN}"
    env.cli("domain", "add", shop, "--policy", "demo-pool", "--zone", DOMAIN)
    key = env.wait_for("shop key active", lambda: env.key_in_state(shop, "active"), 60)
    assert key.key_id in {e["key_id"] for e in pooled}
    (generated,) = [e for e in log(env, "--key", key.key_id) if e["type"] == "KeyGenerated"]
    assert generated["payload"]["pooled"] is True  # type: ignore[index]
    signed = sign(env.workdir / "keys" / f"{key.key_id}.pem", shop, key.selector)
    assert env.verifies(signed)
    assert env.stop() == 0
