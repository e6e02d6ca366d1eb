"""The SealedKeys contract, run against every implementation: SQLite (a file of its own) and
PostgreSQL (a private server, tests/support/pgcluster.py). Adding one is a line in OPENERS."""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable, Iterator

import pytest

from rotator.adapters.keys.sealed_sqlite import SqliteSealedKeys
from rotator.domain.errors import ExternalError
from rotator.ports import SealedKeys
from tests.support.pgcluster import pgcluster, pgcluster_url

__all__ = ["pgcluster", "pgcluster_url"]  # the fixtures the PostgreSQL opener needs

OpenSealed = Callable[[], SealedKeys]


def sqlite_opener(request: pytest.FixtureRequest) -> OpenSealed:
    path = request.getfixturevalue("tmp_path") / "sealed-keys.db"
    return lambda: SqliteSealedKeys(path)


def postgres_opener(request: pytest.FixtureRequest) -> OpenSealed:
    from rotator.adapters.keys.sealed_postgres import PostgresSealedKeys

    url: str = request.getfixturevalue("pgcluster_url")
    return lambda: PostgresSealedKeys(url)


OPENERS = [
    pytest.param(sqlite_opener, id="sqlite"),
    pytest.param(postgres_opener, id="postgres"),
]


@pytest.fixture(params=OPENERS)
def open_sealed(request: pytest.FixtureRequest) -> Iterator[OpenSealed]:
    opener = request.param(request)
    opened: list[SealedKeys] = []

    def open_() -> SealedKeys:
        opened.append(opener())
        return opened[-1]

    yield open_
    for sealed in opened:
        sealed.close()


@pytest.fixture
def sealed(open_sealed: OpenSealed) -> SealedKeys:
    return open_sealed()


def test_a_blob_put_is_got_back_as_it_was(sealed: SealedKeys) -> None:
    blob = bytes(range(256)) * 20  # every octet value, NUL included
    sealed.put("k1", blob)
    assert sealed.get("k1") == blob
    assert sealed.get("absent") is None


def test_put_replaces_a_key_s_blob(sealed: SealedKeys) -> None:
    sealed.put("k1", b"first")
    sealed.put("k1", b"second")
    assert sealed.get("k1") == b"second"
    assert sealed.ids() == ["k1"]


def test_ids_are_sorted(sealed: SealedKeys) -> None:
    for key_id in ("b", "a_", "A-9", "0"):
        sealed.put(key_id, b"x")
    assert sealed.ids() == sorted(["b", "a_", "A-9", "0"])


def test_delete_is_idempotent_and_says_whether_a_row_went(sealed: SealedKeys) -> None:
    sealed.put("k1", b"x")
    assert sealed.delete("k1") is True
    assert sealed.delete("k1") is False
    assert sealed.get("k1") is None
    assert sealed.ids() == []


def test_replace_swaps_only_what_was_read(sealed: SealedKeys) -> None:
    sealed.put("k1", b"old")
    assert sealed.replace("k1", b"other", b"new") is False
    assert sealed.get("k1") == b"old"
    assert sealed.replace("k1", b"old", b"new") is True
    assert sealed.get("k1") == b"new"


def test_replace_never_brings_a_deleted_row_back(sealed: SealedKeys) -> None:
    sealed.put("k1", b"old")
    sealed.delete("k1")
    assert sealed.replace("k1", b"old", b"new") is False
    assert sealed.get("k1") is None


def test_another_connection_sees_what_one_put(open_sealed: OpenSealed) -> None:
    one, two = open_sealed(), open_sealed()
    one.put("k1", b"x")
    assert two.get("k1") == b"x"
    two.delete("k1")
    assert one.ids() == []


def test_a_closed_store_opens_again_when_used(sealed: SealedKeys) -> None:
    sealed.put("k1", b"x")
    sealed.close()
    assert sealed.get("k1") == b"x"


def test_threads_share_one_store(sealed: SealedKeys) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                sealed.put(f"t{n}-{i}", b"x")
                assert sealed.get(f"t{n}-{i}") == b"x"
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(sealed.ids()) == 80


def test_a_pickled_store_reaches_the_same_rows(sealed: SealedKeys) -> None:
    # what a worker process gets, handed the key store with a task
    sealed.put("k1", b"x")
    copy: SealedKeys = pickle.loads(pickle.dumps(sealed))
    try:
        assert copy.get("k1") == b"x"
        assert pickle.loads(pickle.dumps(sealed)) is copy  # one per process
    finally:
        copy.close()


def test_an_unreachable_database_is_one_external_error(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    blocked = tmp_path_factory.mktemp("ro") / "missing-dir" / "x"
    blocked.parent.mkdir()
    blocked.mkdir()  # a directory where the file should be
    with pytest.raises(ExternalError, match=r"^key database .*"):
        SqliteSealedKeys(blocked).ids()


def test_postgres_errors_name_the_database_without_its_password() -> None:
    from rotator.adapters.keys.sealed_postgres import PostgresSealedKeys
    from rotator.config.keys import redact

    assert redact("postgresql://rotator:s3cret@db.example/keys") == (
        "postgresql://rotator:***@db.example/keys"
    )
    assert redact("host=db password='s e' user=x") == "host=db password=*** user=x"
    assert "s3cret" not in repr(PostgresSealedKeys("postgresql://u:s3cret@/x?host=/nonexistent"))
    with pytest.raises(ExternalError) as caught:
        PostgresSealedKeys("postgresql://u:s3cret@/x?host=/nonexistent&port=1").ids()
    assert "s3cret" not in str(caught.value) and "\n" not in str(caught.value)
