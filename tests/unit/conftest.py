"""The unit tests' one environment: the whole Application over in-memory DNS, a fake
signer, a manual clock, a real SQLite store and real key files."""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import structlog

from rotator.adapters.keys.files import FsKeyStore
from rotator.adapters.store.sqlite import SqliteEventStore
from rotator.app import Application, Context
from rotator.domain.errors import NotFound
from rotator.domain.model import KeyState
from rotator.domain.policy import Policy
from rotator.domain.states import State

from .clirun import write_config
from .fakes import FakeDns, FakeSigner, ManualClock, demo_policy


class UnitEnv:
    def __init__(
        self,
        base: Path,
        policies: dict[str, Policy] | None = None,
        esp_nameservers: Sequence[str] = (),
    ) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.tmp = base
        self.clock = ManualClock()
        self.dns = FakeDns()
        self.signer = FakeSigner()
        self.store = SqliteEventStore(base / "rotator.db")
        self.keystore = FsKeyStore(base / "keys")
        self.policies: dict[str, Policy] = policies or {}
        self.ctx = Context(
            store=self.store,
            policy=self.policy,
            publisher=self.dns,
            probe=self.dns,
            keystore=self.keystore,
            signer=self.signer,
            clock=self.clock,
            esp_nameservers=frozenset(esp_nameservers),
        )
        self.app = Application(self.ctx)

    def policy(self, name: str) -> Policy:
        if name not in self.policies:
            raise NotFound(f"policy {name!r} not found")
        return self.policies[name]

    # --- reading the state ---------------------------------------------------------------

    def events(self) -> int:
        return int(self.store.info()["events"])

    def key(self, key_id: str) -> KeyState:
        key = self.store.key(key_id)
        assert key is not None
        return key

    def keys(self, domain: str, state: State | None = None) -> list[KeyState]:
        return [
            k
            for k in self.store.list_keys()
            if k.domain == domain and (state is None or k.state is state)
        ]

    def key_of(self, identity: str, state: State | None = None) -> KeyState:
        keys = self.store.list_keys(identity, state=state)
        assert len(keys) == 1, keys
        return keys[0]

    def types(self, key_id: str) -> list[str]:
        return [
            type(s.event).__name__
            for s in self.store.events()
            if getattr(s.event, "key_id", None) == key_id
        ]

    def patterns(self) -> dict[str, set[str]]:
        """key_id -> the SigningTable patterns the signer holds for it."""
        out: dict[str, set[str]] = {}
        for e in self.signer.entries:
            out.setdefault(e.key_id, set()).add(e.signing_pattern)
        return out


def default_policies() -> dict[str, Policy]:
    standby = demo_policy(rotation={"interval": "1h"}, standby={"enabled": True})
    return {"demo": demo_policy(), "standby": dataclasses.replace(standby, name="standby")}


MakeEnv = Callable[..., UnitEnv]


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    # The CLI points structlog and the stdlib root logger at the runner's stderr, which is
    # gone after the invoke: leave no dangling stream for other tests.
    handlers = list(logging.getLogger().handlers)
    yield
    structlog.reset_defaults()
    root = logging.getLogger()
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return write_config(tmp_path)


@pytest.fixture
def make_env(tmp_path: Path) -> Iterator[MakeEnv]:
    """UnitEnv(policies=..., esp_nameservers=...): each call gets its own directory."""
    counter = itertools.count()
    made: list[UnitEnv] = []

    def make(
        policies: dict[str, Policy] | None = None, esp_nameservers: Sequence[str] = ()
    ) -> UnitEnv:
        env = UnitEnv(
            tmp_path / f"env{next(counter)}",
            {**default_policies(), **(policies or {})},
            esp_nameservers,
        )
        made.append(env)
        return env

    yield make
    for env in made:  # worker processes a test started, and the database
        if env.ctx.pool is not None:
            env.ctx.pool.shutdown()
        env.store.close()


@pytest.fixture
def env(make_env: MakeEnv) -> UnitEnv:
    return make_env()
