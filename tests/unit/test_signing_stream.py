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

from rotator.adapters.keys.files import FsKeyStore
from rotator.adapters.runtime.workers import WorkerPool
from rotator.adapters.signers.fleet import SignerFleet
from rotator.adapters.signers.installer import install
from rotator.adapters.signers.probing.prober import Prober
from rotator.adapters.signers.target import SignerTarget, TableSource, key_reader
from rotator.adapters.store import signing as store_signing
from rotator.adapters.store.row_spool import FileRows
from rotator.adapters.store.seal import Sealer
from rotator.adapters.store.sqlite import SqliteEventStore
from rotator.app import Application, Context, CustomerRow
from rotator.app.signing_set import SigningSet
from rotator.config.targets import ProbeConfig, TargetConfig
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

    assert source.render(always) == 0  # the same write's next target: the rows it kept
    with pytest.raises(SignerError, match="kept changing"):
        app.signing.signing_set().render(always)
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


# --- a change patches the set the last write rendered -------------------------------------


@pytest.fixture
def fleet_app(tmp_path: Path) -> Iterator[Application]:
    """A sealed store and the older [signer] OpenDKIM table as the one real target."""
    store = SqliteEventStore(tmp_path / "r.db", sealer=Sealer(b"k" * 32))
    dns = FakeDns()
    policies = {"demo": demo_policy()}
    fleet = SignerFleet([legacy(tmp_path, ("ed25519", "rsa"))], tmp_path / "signer.lock")
    keystore = FsKeyStore(tmp_path / "keys")
    ctx = Context(store, policies.__getitem__, dns, dns, keystore, fleet, ManualClock(),
                  row_buffer=FileRows)  # fmt: skip
    ctx.safety_min_keys = 1000  # every key rotates at once, round after round
    app = Application(ctx)
    app.onboarding.add_esp(ESP, "demo")
    app.onboarding.add_customers(
        [
            CustomerRow(
                customer=f"C{i}",
                domain=f"c{i}.example",
                mode="third-party",
                policy="demo",
                signing_domain=f"c{i}.esp-dkim.test",
                **({"esp_signature": ESP} if i % 2 else {}),
            )
            for i in range(6)
        ]
    )
    app.lifecycle.tick()
    yield app
    store.close()


def tables(tmp_path: Path) -> dict[str, str]:
    return {n: (tmp_path / "o" / n).read_text() for n in ("KeyTable", "SigningTable")}


def from_store(app: Application, tmp_path: Path) -> dict[str, str]:
    """The tables a complete write from the store renders now."""
    fresh = legacy(tmp_path / "fresh", ("ed25519", "rsa"))
    files = fresh.complete(TableSource(app.signing.signing_set()))
    return {n: f.read().decode() for n, f in files.spooled.items()}


def reads(app: Application, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each read of the complete signing set from the store, from now on."""
    seen: list[str] = []
    store = app.ctx.store
    for name in ("signing_stream", "signing_rows"):
        real = getattr(store, name)

        def counted(*a: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
            seen.append(_name)
            return _real(*a, **kw)

        monkeypatch.setattr(store, name, counted)
    return seen


def test_an_activation_patches_the_last_written_tables(
    fleet_app: Application, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = fleet_app
    assert app.signing.base is not None  # the first activation wrote the set and kept it
    seen = reads(app, monkeypatch)
    first = {k.key_id for k in app.ctx.store.list_keys(state=State.ACTIVE)}
    for _ in range(3):  # every identity's key rotates (the ESP's too), three times over
        app.ctx.clock.advance(61)  # type: ignore[attr-defined]
        app.lifecycle.tick()
        app.lifecycle.tick()
    now = {k.key_id for k in app.ctx.store.list_keys(state=State.ACTIVE)}
    assert len(now) == len(first) == 7 and not now & first
    assert seen == []  # not one complete read of the store: each change patched the last
    written = tables(tmp_path)
    assert written == from_store(app, tmp_path)
    esp = next(k for k in app.ctx.store.list_keys(state=State.ACTIVE) if k.domain == ESP)
    assert written["SigningTable"].count(esp.key_id) == 3


def test_what_an_operator_records_meanwhile_makes_the_next_change_read_the_store(
    fleet_app: Application, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = fleet_app
    seen = reads(app, monkeypatch)
    # a customer who carries the ESP's signature from the start: the set changed, with
    # no activation of this process to patch it
    app.onboarding.add_customers(
        [
            CustomerRow(
                customer="N",
                domain="n.example",
                mode="third-party",
                policy="demo",
                signing_domain="n.esp-dkim.test",
                esp_signature=ESP,
            )
        ]
    )
    app.ctx.clock.advance(61)  # type: ignore[attr-defined]
    app.lifecycle.tick()
    app.lifecycle.tick()
    assert "signing_stream" in seen
    assert tables(tmp_path) == from_store(app, tmp_path)
    assert "*@n.example" in tables(tmp_path)["SigningTable"]
    # another process wrote the targets (its stamp): no base either
    seen.clear()
    app.ctx.signer.stamp(12345)
    app.ctx.clock.advance(61)  # type: ignore[attr-defined]
    app.lifecycle.tick()
    app.lifecycle.tick()
    assert "signing_stream" in seen
    assert tables(tmp_path) == from_store(app, tmp_path)


def test_rows_kept_in_a_file_come_back_as_they_went_in() -> None:
    rows = FileRows()
    want = [
        ("k1", "a.example", "s1", "rsa", "a.example", "s1._domainkey.a.example.", "*@a.example", 0),
        ("k2", "é.example", "s2", "ed25519", "", "", "*@*.b", 1),
    ]
    for r in want * 5000:
        rows.add(r)
    assert list(rows.rows()) == want * 5000
    assert list(rows.rows()) == want * 5000  # read again
    with pytest.raises(SignerError, match="separator or a line break"):
        rows.add(("k\n3", "a", "s", "rsa", "", "", "*@a", 0))
    rows.close()


@pytest.mark.parametrize("fmt", ["opendkim", "rspamd", "json"])
def test_a_target_streams_its_tables_for_a_change(
    app: Application, tmp_path: Path, fmt: str
) -> None:
    # [[targets]] of a format that streams: a change sends the new keys' files and the
    # tables, rendered a line at a time from the (patched) set, byte for byte what the
    # list renders (their complete write still lists the entries)
    cfg = TargetConfig(name="mx1", format=fmt, directory=tmp_path / "mx1",
                       algorithms=("ed25519",))  # fmt: skip
    target = SignerTarget(cfg, key_reader(Path), Prober(ProbeConfig(), lambda z, n: []))
    source = app.signing.signing_set()
    files = target.table_files(TableSource(source))
    assert not files.tables
    got = {n: f.read() for n, f in files.spooled.items()}
    want = target.format.tables(target.select(source()), target.key_dir)
    assert got == want
    assert f"{tmp_path}/mx1/keys/".encode() in b"".join(got.values())
    if fmt == "opendkim":
        keys = {e.key_id for e in target.select(source())}
        assert got["KeyTable"].count(b"\n") == 1 + len(keys)


@pytest.mark.parametrize("fmt", ["opendkim", "rspamd", "json"])
def test_a_complete_write_streams_key_files_and_tables(
    app: Application, tmp_path: Path, fmt: str
) -> None:
    # a local [[targets]] entry written completely from the stream (the key files read
    # a batch at a time as the rows pass) holds exactly what the list-based write holds
    def target(name: str) -> SignerTarget:
        algorithms = ("ed25519",) if fmt == "opendkim" else ("ed25519", "rsa")
        cfg = TargetConfig(name=name, format=fmt, directory=tmp_path / name, algorithms=algorithms)
        reader = key_reader(app.ctx.keystore.path)
        return SignerTarget(cfg, reader, Prober(ProbeConfig(), lambda z, n: []))

    streamed_t, listed_t = target("streamed"), target("listed")
    (tmp_path / "streamed" / "keys").mkdir(parents=True)
    stale = tmp_path / "streamed" / "keys" / "0123456789abcdef.pem"
    stale.write_bytes(b"a key that left")
    source = app.signing.signing_set()

    def no_list() -> list[SigningEntry]:
        raise AssertionError("the complete write read the set as a list")

    source.entries = no_list
    streamed_t.write(TableSource(source))
    listed_t._deliver(listed_t.files(listed_t.select(app.signing.signing_set()())))

    def contents(root: Path) -> dict[str, bytes]:
        # the tables name the key files under their own directory
        return {
            str(p.relative_to(root)): p.read_bytes().replace(str(root).encode(), b"<dir>")
            for p in root.rglob("*")
            if p.is_file()
        }

    got, want = contents(tmp_path / "streamed"), contents(tmp_path / "listed")
    assert got.keys() == want.keys()
    assert sorted(k for k in got if k.startswith("keys/")) and got == want
    assert not stale.exists()  # wiped: no table names it


def test_the_events_that_invalidate_a_kept_set_are_every_way_in_and_out_of_active() -> None:
    # a change patches the set the last write kept unless one of these was recorded since:
    # every transition into or out of "active" must be among them (and the identity
    # events that change the senders), or a patched table would miss it
    from rotator.adapters.store.log_reads import SET_EVENTS, SIGNING_EVENTS
    from rotator.domain.machine import TRANSITIONS

    def sources(t: dict[str, Any]) -> list[str]:
        return [t["source"]] if isinstance(t["source"], str) else list(t["source"])

    moving = {
        t["trigger"]
        for t in TRANSITIONS
        if t["dest"] is not None and (t["dest"] == "active") != ("active" in sources(t))
    }
    assert moving == {"KeyActivated", "DrainStarted", "KeyCompromised"}
    assert set(SET_EVENTS) == moving | {"IdentityAdded", "IdentityRemoved"}
    assert set(SET_EVENTS) <= set(SIGNING_EVENTS)
