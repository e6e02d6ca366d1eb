"""Integration fixtures: real BIND nameservers on loopback. Skipped where named is missing,
except under CI (CI=true), where a missing nameserver is a failure, never a silent skip."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from rotator.localdns import BindPair

from .rotatorenv import RotatorEnv

POLICIES = Path(__file__).resolve().parents[2] / "policies"
DOMAIN = "example.test"
HAVE_NAMED = bool(shutil.which("named") or os.path.exists("/usr/sbin/named"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if HAVE_NAMED:
        return
    if os.environ.get("CI"):
        raise pytest.UsageError(
            "BIND's named is not installed but CI is set: apt-get install bind9"
        )
    skip = pytest.mark.skip(reason="BIND 9 named not installed (apt-get install bind9)")
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(skip)


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
