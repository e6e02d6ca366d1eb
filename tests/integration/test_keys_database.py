"""Keys sealed in PostgreSQL, across two nodes that share nothing but the database (a private
server, tests/support/pgcluster.py): node A generates and seals keys; node B, starting with
an empty key directory, materializes them and signs with one, which dkimpy verifies against
A's public key; A's destroy makes B's copy go and leaves no row. Then what a destroyed
key's row leaves in the server's files, and how changing the KEK makes that unreadable."""

from __future__ import annotations

import glob
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import dkim
import psycopg
import pytest

from rotator.adapters.keys.envelope import Envelope, Kek
from rotator.adapters.keys.files import FsKeyStore
from rotator.adapters.keys.pool import FsKeyPool
from rotator.adapters.keys.sealed import SealedKeyStore, rewrap
from rotator.adapters.keys.sealed_postgres import PostgresSealedKeys
from rotator.domain.errors import ConfigError
from tests.support.pgcluster import PgCluster, pgcluster, pgcluster_url

__all__ = ["pgcluster", "pgcluster_url"]

pytestmark = pytest.mark.integration

KEK = Kek(os.urandom(32))
MESSAGE = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Subject: failover\r\n"
    b"Date: Tue, 24 Nov 2026 12:00:00 +0000\r\n"
    b"Message-ID: <1@example.com>\r\n"
    b"\r\n"
    b"Signed by whichever node holds the lead.\r\n"
)


def node(base: Path, url: str, kek: Kek = KEK) -> SealedKeyStore:
    return SealedKeyStore(FsKeyStore(base / "keys"), PostgresSealedKeys(url), Envelope(kek))


def rows(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [str(r[0]) for r in conn.execute("SELECT key_id FROM sealed_keys")]


def answering(name: str, record: bytes) -> Callable[..., bytes | None]:
    def dnsfunc(asked: bytes, timeout: int = 5) -> bytes | None:
        return record if asked == name.encode() else None

    return dnsfunc


def test_another_node_takes_over_with_nothing_but_the_database(
    tmp_path: Path, pgcluster_url: str
) -> None:
    a, b = node(tmp_path / "a", pgcluster_url), node(tmp_path / "b", pgcluster_url)
    try:
        made = {key_id: a.generate(key_id, "rsa", 2048) for key_id in ("k1", "k2")}
        assert sorted(rows(pgcluster_url)) == ["k1", "k2"]
        assert not b.dir.exists()  # B has never seen a key

        done = b.materialize({"k1", "k2"})
        assert done.written == ["k1", "k2"] and not done.missing and not done.unreadable
        signed = dkim.sign(
            MESSAGE,
            b"sel",
            b"example.com",
            b.path("k1").read_bytes(),
            include_headers=[b"from", b"to", b"subject", b"date"],
        )
        record = b"v=DKIM1; k=rsa; p=" + made["k1"].public_key_b64.encode()
        dns = answering("sel._domainkey.example.com.", record)
        assert dkim.verify(bytes(signed) + MESSAGE, dnsfunc=dns)

        assert a.destroy("k1") is True
        assert rows(pgcluster_url) == ["k2"]
        gone = b.materialize({"k2"})
        assert gone.wiped == ["k1"] and not b.path("k1").exists()
        assert sorted(p.name for p in b.dir.iterdir()) == ["k2.pem"]
        assert a.destroy("k1") is False  # idempotent
    finally:
        a.close()
        b.close()


def test_workers_and_the_pool_seal_into_postgres(tmp_path: Path, pgcluster_url: str) -> None:
    a = node(tmp_path / "a", pgcluster_url)
    try:
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=2, mp_context=spawn) as workers:
            ids = [f"w{i}" for i in range(6)]
            list(workers.map(a.generate, ids, ["rsa"] * 6, [1024] * 6))
        assert sorted(rows(pgcluster_url)) == ids
        pool = FsKeyPool(a.files, seal=a.seal)
        pool.add("p1", "ed25519", 256)
        assert "p1" not in rows(pgcluster_url)
        assert [k for k, _ in pool.take("ed25519", 256, 1)] == ["p1"]
        assert "p1" in rows(pgcluster_url)
    finally:
        a.close()


def test_rewrap_on_postgres_leaves_nothing_the_old_kek_opens(
    tmp_path: Path, pgcluster_url: str
) -> None:
    a = node(tmp_path / "a", pgcluster_url)
    new = Kek(os.urandom(32))
    try:
        for i in range(3):
            a.generate(f"k{i}", "ed25519", 256)
        done = rewrap(a.sealed, a.envelope, new)
        assert (done.rewrapped, done.already, done.left) == (3, 0, [])
        for key_id in a.sealed.ids():
            blob = a.sealed.get(key_id)
            assert blob is not None
            assert Envelope(new).open(key_id, blob) == a.path(key_id).read_bytes()
            with pytest.raises(ConfigError):
                Envelope(KEK).open(key_id, blob)
    finally:
        a.close()


def test_a_destroyed_row_outlives_destroy_in_the_wal_until_the_kek_goes(
    tmp_path: Path, pgcluster: PgCluster, pgcluster_url: str
) -> None:
    """What docs/keys-in-database.md says destroy leaves: the sealed row is gone from the
    table, but its bytes are still in the server's WAL. Once the KEK that wrapped it is
    replaced (rewrap) and destroyed, that copy no longer opens with anything rotator has."""
    a = node(tmp_path / "a", pgcluster_url)
    try:
        a.generate("k1", "ed25519", 256)
        old_blob = a.sealed.get("k1")
        assert old_blob is not None
        a.generate("k2", "ed25519", 256)
        a.destroy("k1")
        assert rows(pgcluster_url) == ["k2"]
        wal = b"".join(Path(p).read_bytes() for p in glob.glob(f"{pgcluster.data}/pg_wal/0*"))
        assert old_blob in wal  # destroy deleted the row, not its history
        assert Envelope.kek_of(old_blob) == KEK.id

        new = Kek(os.urandom(32))
        rewrap(a.sealed, a.envelope, new)
        # the old KEK destroyed everywhere: what rotator then holds is the new one only
        with pytest.raises(ConfigError, match="wrapped by KEK"):
            Envelope(new).open("k1", old_blob)
        blob = a.sealed.get("k2")
        assert blob is not None and Envelope(new).open("k2", blob)
    finally:
        a.close()
