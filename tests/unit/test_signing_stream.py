"""The complete signing set as a stream (a million-line OpenDKIM table in bounded memory):
it renders byte for byte what the list of entries renders, with the same changes applied
(keys gone, ESP signatures dropped, keys added); every row's MAC is checked, in worker
processes or here; and a commit by another connection meanwhile makes it start afresh."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rotator.adapters import store_signing
from rotator.adapters.keystore_fs import FsKeyStore
from rotator.adapters.signers.install import install
from rotator.adapters.signers.probes import Prober
from rotator.adapters.signers.target import SignerTarget, TableSource, key_reader
from rotator.adapters.store_seal import Sealer
from rotator.adapters.store_sqlite import SqliteEventStore
from rotator.adapters.workers import WorkerPool
from rotator.app import Application, Context, CustomerRow
from rotator.app.signing_set import SigningSet
from rotator.config_targets import ProbeConfig, TargetConfig
from rotator.domain.errors import SignerError, StoreError
from rotator.domain.states import State
from rotator.ports import SigningEntry

from .fakes import FakeDns, FakeSigner, ManualClock, demo_policy

ESP = "fbl.esp.test"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Application]:
    # a sealed store (every row carries its MAC), as the daemon's
    store = SqliteEventStore(tmp_path / "r.db", sealer=Sealer(b"k" * 32))
    dns = FakeDns()
    rsa = dataclasses.replace(demo_policy(key={"algorithm": "rsa"}), name="rsa")
    policies = {"demo": demo_policy(), "rsa": rsa}
    keystore = FsKeyStore(tmp_path / "keys")
    ctx = Context(store, policies.__getitem__, dns, dns, keystore, FakeSigner(), ManualClock())
    app = Application(ctx)
    app.onboarding.add_esp(ESP, "demo")
    rows = [
        CustomerRow(
            customer=f"C{i}",
            domain=f"c{i}.example",
            mode="third-party",
            policy="rsa" if i % 3 == 0 else "demo",
            signing_domain=f"c{i}.esp-dkim.test",
            **({"esp_signature": ESP} if i % 2 else {}),
        )
        for i in range(8)
    ]
    app.onboarding.add_customers(rows)
    app.onboarding.add_identity("zeta.example", "demo")
    app.lifecycle.tick()
    yield app
    if ctx.pool is not None:
        ctx.pool.shutdown()
    store.close()


def legacy(tmp_path: Path, algorithms: tuple[str, ...]) -> SignerTarget:
    cfg = TargetConfig(
        name="opendkim",
        format="opendkim",
        directory=tmp_path / "o",
        algorithms=algorithms,
        legacy_tables=(tmp_path / "o" / "KeyTable", tmp_path / "o" / "SigningTable"),
    )
    return SignerTarget(
        cfg, key_reader(lambda k: tmp_path / k), Prober(ProbeConfig(), lambda z, n: [])
    )


def streamed(target: SignerTarget, source: SigningSet) -> dict[str, bytes]:
    files = target.complete(TableSource(source))
    assert not files.tables  # the stream path, not the list
    return {name: f.read() for name, f in files.spooled.items()}


def from_list(target: SignerTarget, source: SigningSet) -> dict[str, bytes]:
    return dict(target.files(target.select(source())).tables)


@pytest.mark.parametrize("algorithms", [("ed25519",), ("rsa",), ("ed25519", "rsa")])
def test_the_stream_renders_what_the_list_renders(
    app: Application, tmp_path: Path, algorithms: tuple[str, ...]
) -> None:
    target = legacy(tmp_path, algorithms)
    esp_key = next(k for k in app.ctx.store.list_keys(state=State.ACTIVE) if k.domain == ESP)
    some = next(k for k in app.ctx.store.list_keys(state=State.ACTIVE) if k.domain != ESP)
    path = app.ctx.keystore.key_file
    extra = SigningEntry("ffff000000000001", "new.example", "s9", path("ffff000000000001"),
                         "*@c3.example", "ed25519", second=True)  # fmt: skip
    early = SigningEntry("0000000000000001", "a.example", "s1", path("0000000000000001"),
                         "*@a.example", "rsa")  # fmt: skip
    sets = [
        app.signing.signing_set(),
        app.signing.signing_set(gone={some.key_id}),
        app.signing.signing_set(unsigned={"*@c1.example", "*@c5.example"}),
        app.signing.signing_set(gone={esp_key.key_id}, added=[extra, early]),
    ]
    for source in sets:
        want = from_list(target, source)
        got = streamed(target, source)
        assert {n: t.decode().splitlines() for n, t in got.items()} == {
            n: t.decode().splitlines() for n, t in want.items()
        }
        assert got["SigningTable"].count(b"\n") > 2
    # the ESP key is listed once, and signs second for each opted-in customer
    table = streamed(target, sets[0])
    if "ed25519" in algorithms:
        listed = table["KeyTable"].decode().splitlines()
        assert sum(ln.startswith(esp_key.key_id + " ") for ln in listed) == 1
        assert table["SigningTable"].count(esp_key.key_id.encode()) == 4


def edit(app: Application) -> None:
    store = app.ctx.store
    assert isinstance(store, SqliteEventStore)
    store.db.execute("UPDATE identities SET signing_pattern = '*@victim.example' "
                     "WHERE identity = 'zeta.example'")  # fmt: skip
    store.db.conn.commit()


def test_an_edited_row_is_refused_here(app: Application, tmp_path: Path) -> None:
    edit(app)
    app.ctx.pool = None
    with pytest.raises(StoreError, match=r"identities row zeta\.example was not written by"):
        streamed(legacy(tmp_path, ("ed25519", "rsa")), app.signing.signing_set())


def test_an_edited_row_is_refused_by_the_worker_processes(
    app: Application, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_signing, "PARALLEL_FROM", 0)  # workers even for a few rows
    app.ctx.pool = WorkerPool(2)
    submitted = 0
    real = app.ctx.pool.executor()
    original = real.submit

    def counted(*args: Any, **kw: Any) -> Any:
        nonlocal submitted
        submitted += 1
        return original(*args, **kw)

    monkeypatch.setattr(real, "submit", counted)
    source = app.signing.signing_set()
    target = legacy(tmp_path, ("ed25519", "rsa"))
    assert streamed(target, source)  # checked in the workers, and found sound
    assert submitted >= 2
    edit(app)
    with pytest.raises(StoreError, match=r"identities row zeta\.example was not written by"):
        streamed(target, app.signing.signing_set())


def test_a_commit_meanwhile_renders_again(app: Application, tmp_path: Path) -> None:
    store = app.ctx.store
    assert isinstance(store, SqliteEventStore)
    other = sqlite3.connect(store.path)
    calls = 0

    def render(rows: Iterator[tuple[Any, ...]]) -> int:
        nonlocal calls
        calls += 1
        n = sum(1 for _ in rows)
        if calls == 1:  # another process commits while the table is being written
            other.execute("PRAGMA user_version = 7")
            other.commit()
        return n

    source = app.signing.signing_set()
    assert source.render(render) == len(source())
    assert calls == 2

    def always(rows: Iterator[tuple[Any, ...]]) -> int:
        other.execute("PRAGMA user_version = 8")
        other.commit()
        return 0

    with pytest.raises(SignerError, match="kept changing"):
        source.render(always)
    other.close()


def test_the_installer_takes_a_spooled_table(app: Application, tmp_path: Path) -> None:
    target = legacy(tmp_path, ("ed25519", "rsa"))
    source = app.signing.signing_set()
    files = target.complete(TableSource(source))
    want = {n: f.read() for n, f in files.spooled.items()}
    out = tmp_path / "out"
    tables = {n: (f, 0o644) for n, f in files.spooled.items()}
    assert install(out, {}, tables, manage_keys=False)["written"] == 2
    assert {n: (out / n).read_bytes() for n in want} == want
    # the same again is seen as unchanged, read a chunk at a time
    assert install(out, {}, tables, manage_keys=False) == {
        "written": 0,
        "unchanged": 2,
        "removed": 0,
    }
    (out / "SigningTable").write_bytes(want["SigningTable"][:-3])
    assert install(out, {}, tables, manage_keys=False)["written"] == 1
    assert (out / "SigningTable").read_bytes() == want["SigningTable"]
