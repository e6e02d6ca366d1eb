"""The Idempotency-Key replies' contract, run against every implementation: a key is
claimed once, its reply kept for retries (across a reopen), freed by a failure or by
expiry, and per owner. Adding an implementation is one line in KEEPERS."""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rotator.adapters.idempotency.sqlite import SqliteIdempotencyKeys
from rotator.ports import IdempotencyKeys, Reply, Seen

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(hours=24)
# where: this test's own directory; a second call reopens the same keys
KeeperFactory = Callable[[Path], IdempotencyKeys]


def sqlite_keys(where: Path) -> IdempotencyKeys:
    return SqliteIdempotencyKeys(where / "rotator.db.api-idempotency")


KEEPERS = [pytest.param(sqlite_keys, id="sqlite")]
Open = Callable[[], IdempotencyKeys]


@pytest.fixture(params=KEEPERS)
def open_keys(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Open]:
    factory: KeeperFactory = request.param
    opened: list[IdempotencyKeys] = []

    def open_() -> IdempotencyKeys:
        opened.append(factory(tmp_path))
        return opened[-1]

    yield open_
    for keys in opened:
        keys.close()


def test_a_key_is_claimed_once_then_replays_its_reply(open_keys: Open) -> None:
    keys = open_keys()
    assert keys.claim("panel", "k1", "d1", T0) is None
    assert keys.claim("panel", "k1", "d1", T0) == Seen("d1", None)  # still in flight
    body = {"identity": "a.example", "keys": [{"selector": "s1"}], "note": "é", "n": None}
    keys.finish("panel", "k1", Reply(201, body))
    assert keys.claim("panel", "k1", "d1", T0 + timedelta(hours=1)) == Seen("d1", Reply(201, body))
    # another request under the same key: the first one's digest, for the caller to refuse
    assert keys.claim("panel", "k1", "d2", T0) == Seen("d1", Reply(201, body))


def test_keys_are_per_owner(open_keys: Open) -> None:
    keys = open_keys()
    assert keys.claim("panel", "k1", "d1", T0) is None
    assert keys.claim("other", "k1", "d2", T0) is None


def test_a_failed_request_frees_its_key(open_keys: Open) -> None:
    keys = open_keys()
    assert keys.claim("panel", "k1", "d1", T0) is None
    keys.release("panel", "k1")
    assert keys.claim("panel", "k1", "d2", T0) is None


def test_a_key_expires_a_day_after_its_first_request(open_keys: Open) -> None:
    keys = open_keys()
    assert keys.claim("panel", "k1", "d1", T0) is None
    keys.finish("panel", "k1", Reply(200, {"ok": True}))
    assert keys.claim("panel", "k1", "d1", T0 + DAY - timedelta(seconds=1)) is not None
    assert keys.claim("panel", "k1", "d2", T0 + DAY + timedelta(seconds=1)) is None


def test_replies_outlive_a_reopen_and_unfinished_claims_do_not(open_keys: Open) -> None:
    first = open_keys()
    assert first.claim("panel", "done", "d1", T0) is None
    first.finish("panel", "done", Reply(202, {"requested": []}))
    assert first.claim("panel", "cut", "d2", T0) is None  # its process stops mid-request
    first.close()
    again = open_keys()
    assert again.claim("panel", "done", "d1", T0) == Seen("d1", Reply(202, {"requested": []}))
    assert again.claim("panel", "cut", "d2", T0) is None


def test_the_sqlite_file_is_the_owners_alone(tmp_path: Path) -> None:
    keys = sqlite_keys(tmp_path)
    try:
        mode = (tmp_path / "rotator.db.api-idempotency").stat().st_mode
        assert stat.S_IMODE(mode) == 0o600  # a reply may hold a webhook's secret
    finally:
        keys.close()
