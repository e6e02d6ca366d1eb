"""Integration fixtures: real BIND nameservers on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from rotator.demo.localdns import BindPair

from .rotatorenv import RotatorEnv

POLICIES = Path(__file__).resolve().parents[2] / "policies"
DOMAIN = "example.test"


@pytest.fixture
def bind_factory() -> Iterator[Callable[..., BindPair]]:
    started: list[BindPair] = []

    def make(base: Path, zones: Sequence[str] = ("example.test",), **kw: Any) -> BindPair:
        pair = BindPair(base, zones=zones, **kw).start()
        started.append(pair)
        return pair

    yield make
    for pair in started:
        pair.stop()


@pytest.fixture
def bind_pair(tmp_path: Path, bind_factory: Callable[..., BindPair]) -> BindPair:
    return bind_factory(tmp_path / "bind")


@pytest.fixture
def env(tmp_path: Path, bind_factory: Callable[..., BindPair]) -> Iterator[RotatorEnv]:
    """rotator (CLI + daemon subprocesses) on the shipped policies, beside a BIND pair
    serving DOMAIN."""
    renv = RotatorEnv(tmp_path, bind_factory(tmp_path / "bind", zones=(DOMAIN,)), POLICIES)
    try:
        yield renv
    finally:
        renv.close()


# the real OpenDKIM + rspamd pair for the tests that take `fleet` (imported last: it reads
# DOMAIN and POLICIES from here)
# headless Chromium for the tests that take `browser`
from tests.support.browser import browser  # noqa: E402, F401

from .signer_fleet import fleet  # noqa: E402, F401
