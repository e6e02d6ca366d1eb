"""The signer lock: waited on for a bounded time, and a waiter that gives up names the
holder (another process here, as the daemon is to an operator's command)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from rotator.adapters.signers.fleet import SignerFleet
from rotator.adapters.signers.probing.prober import Prober
from rotator.adapters.signers.signer_lock import LOCK_WAIT
from rotator.adapters.signers.target import SignerTarget, key_reader
from rotator.config.targets import ProbeConfig, TargetConfig
from rotator.domain.errors import SignerLockBusy

ROOT = Path(__file__).resolve().parents[2]
HOLD = """
import sys
from pathlib import Path
from rotator.adapters.signers.fleet import SignerFleet
from rotator.adapters.signers.probing.prober import Prober
from rotator.adapters.signers.signer_lock import LOCK_WAIT
from rotator.adapters.signers.target import SignerTarget, key_reader
from rotator.config.targets import ProbeConfig, TargetConfig
with SignerFleet([], Path(sys.argv[1])).locked():
    print("held", flush=True)
    sys.stdin.read()
"""


@contextmanager
def held_elsewhere(path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lock until the block ends."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "held\n"
        yield child
    finally:
        child.kill()
        child.wait(timeout=10)
        for pipe in (child.stdin, child.stdout):
            if pipe is not None:
                pipe.close()


def test_a_held_lock_fails_after_the_wait_naming_its_holder(tmp_path: Path) -> None:
    lock = tmp_path / "signer-lock"
    fleet = SignerFleet([], lock, lock_wait=0.5)

    def take() -> None:
        with fleet.locked():
            pass

    with held_elsewhere(lock) as holder, ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        with pytest.raises(SignerLockBusy) as raised:
            pool.submit(take).result(timeout=10)
        waited = time.monotonic() - started
    assert 0.5 <= waited < 2
    text = str(raised.value)
    assert text.startswith(f"the signer lock is held by pid {holder.pid} (rotator ")
    assert " since " in text and "UTC" in text and f"kill {holder.pid}" in text
    assert "\n" not in text


def test_the_lock_is_taken_once_free_and_names_only_a_current_holder(tmp_path: Path) -> None:
    lock = tmp_path / "signer-lock"
    fleet = SignerFleet([], lock, lock_wait=5)

    def take() -> str:
        with fleet.locked():
            return lock.read_text()

    with held_elsewhere(lock) as holder, ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(take)
        time.sleep(0.2)
        assert not waiting.done()
        assert holder.stdin is not None
        holder.stdin.close()  # the holder is done
        assert f'"pid": {os.getpid()}' in waiting.result(timeout=10)
    assert lock.read_text() == ""  # released: nobody named
    assert "another process holds it (it did not say which)" in fleet.lock.busy()


def test_the_wait_outlasts_a_healthy_holder(tmp_path: Path) -> None:
    """Deliver and reload (each up to the target's timeout), then the probe."""
    assert SignerFleet([], tmp_path / "lock").lock.wait == LOCK_WAIT
    probe = ProbeConfig(kind="milter", address="inet:1@127.0.0.1", timeout=30)
    cfg = TargetConfig(
        name="mx", format="json", directory=tmp_path / "mx", timeout=100, probe=probe
    )
    slow = SignerTarget(cfg, key_reader(lambda k: tmp_path / k), Prober(probe, lambda z, n: []))
    assert SignerFleet([slow], tmp_path / "lock").lock.wait == 2 * 100 + 30 + 10
