"""A second nameserver implementation: Knot DNS (knotd) as a secondary of the BIND primary,
fed by NOTIFY + IXFR. A key is verified only once Knot serves it too, and mail verifies
with dkimpy asking Knot."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rotator.demo.localdns import PRIMARY, BindPair, free_port
from tests.support.knot import KnotSecondary

from .conftest import DOMAIN, POLICIES
from .rotatorenv import RotatorEnv, sign, verifies

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (shutil.which("knotd") or Path("/usr/sbin/knotd").exists()),
        reason="Knot DNS not installed (apt-get install knot)",
    ),
]


@pytest.fixture
def knot_env(
    tmp_path: Path, bind_factory: Callable[..., BindPair]
) -> Iterator[tuple[RotatorEnv, KnotSecondary]]:
    knot_port = free_port((PRIMARY,))
    bind = bind_factory(
        tmp_path / "bind", zones=(DOMAIN,), extra_secondaries=[(PRIMARY, knot_port)]
    )
    knot = KnotSecondary(tmp_path / "knot", [DOMAIN], (bind.primary, bind.port))
    knot.port = knot_port
    knot.start()
    env = RotatorEnv(tmp_path, bind, POLICIES)
    servers = [f"{ip}:{port}" for ip, port in bind.addresses] + [f"{PRIMARY}:{knot_port}"]
    cfg = env.config.read_text().replace(bind.verifier_config(), "")
    env.config.write_text(
        cfg.replace("[dns]\n", f"[dns]\nnameservers = {servers!r}\n".replace("'", '"'))
    )
    try:
        yield env, knot
    finally:
        env.close()
        knot.stop()


@pytest.mark.timeout(120)
def test_knot_secondary_must_agree_before_a_key_is_verified(
    knot_env: tuple[RotatorEnv, KnotSecondary],
) -> None:
    env, knot = knot_env
    env.cli("domain", "add", DOMAIN, "--policy", "demo")
    env.start()
    first = env.wait_for("key active", lambda: env.key_in_state(DOMAIN, "active"))
    signed = sign(env.workdir / "keys" / f"{first.key_id}.pem", DOMAIN, first.selector)
    assert verifies(signed, PRIMARY, knot.port)  # dkimpy asking Knot
    log = env.cli("log", "--json", "--type", "KeyVerified").stdout
    assert f"{PRIMARY}:{knot.port}" in log  # Knot's answer is part of the evidence

    knot.stop()
    env.cli("rotate", DOMAIN, "--reason", "knot down")
    stuck = env.wait_for(
        "verification blocked by the stopped Knot server",
        lambda: next(
            (k for k in env.list_keys(DOMAIN) if k.state.value == "published" and k.attempts >= 1),
            None,
        ),
    )
    assert f"{PRIMARY}:{knot.port}" in (stuck.last_error or "")
    assert env.key_in_state(DOMAIN, "active").key_id == first.key_id
    knot.start()
    env.wait_for(
        "successor active once Knot is back",
        lambda: env.key_in_state(DOMAIN, "active", {first.key_id}),
        60,
    )
    assert env.stop() == 0
