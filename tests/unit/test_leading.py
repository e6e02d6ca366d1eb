"""This process's part in leadership (app/leading.py) against a lease the test moves by
hand: a standby takes a free lease, the leader keeps it by renewals and steps down (leader
work refused from then on) when a renewal says it is gone or none lands before the
deadline; a command's lock leads only while no daemon does; signer writes need the lease;
`rotator status` says who leads."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import cast

import pytest
from structlog.testing import capture_logs

from rotator.app.leading import LeaderLock, LeaderSigner, LeaseKeeper
from rotator.bootstrap import App
from rotator.cli.operations import leader_line
from rotator.domain.errors import AlreadyRunning, FencedOut, StoreError
from rotator.ports import Leader, Lease

from .fakes import FakeSigner

T = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


class Lease1:
    """One lease, moved by the test: who holds it, whether the database answers, and the
    renewal deadline the leases it hands out carry."""

    shared = True

    def __init__(self, renew: float = 60.0) -> None:
        self.holder: Lease | None = None
        self.epoch = 0
        self.down = False  # the database does not answer
        self.renew_s = renew
        self.released: list[int] = []

    def _up(self) -> None:
        if self.down:
            raise StoreError("database db: connection refused")

    def acquire(self, node: str) -> Lease | None:
        self._up()
        if self.holder is not None and self.holder.node != node:
            return None
        self.epoch += 1
        deadline = time.monotonic() + self.renew_s
        self.holder = Lease(node, self.epoch, T, T, "7@host", True, deadline)
        return self.holder

    def renew(self, lease: Lease) -> Lease | None:
        self._up()
        if self.holder is None or self.holder.epoch != lease.epoch:
            return None
        self.holder = replace(lease, deadline=time.monotonic() + self.renew_s)
        return self.holder

    def release(self, lease: Lease) -> None:
        self.released.append(lease.epoch)
        if self.holder is not None and self.holder.epoch == lease.epoch:
            self.holder = None

    def current(self) -> Leader | None:
        self._up()
        return self.holder

    def wake(self) -> int | None:
        return 7 if self.holder is not None else None

    def close(self) -> None:
        pass

    def take_over(self, node: str) -> None:
        self.epoch += 1
        self.holder = Lease(node, self.epoch, T, T, "8@other", True)


def keeper(lead: Lease1, fences: list[Lease | None] | None = None) -> LeaseKeeper:
    out = fences if fences is not None else []
    return LeaseKeeper(lead, "mx1", retry=0.05, fence=out.append)


def wait(predicate: Callable[[], object], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_standby_takes_the_free_lease_and_fences_its_store_first() -> None:
    lead, fences = Lease1(), list[Lease | None]()
    lead.take_over("mx2")
    k = keeper(lead, fences)
    assert k.take() is None and k.seen is not None and k.seen.node == "mx2"
    with pytest.raises(FencedOut, match="node mx1 does not lead"):
        k.check()
    lead.holder = None  # mx2's lease ran out
    k.start()
    try:
        wait(k.changed.is_set)
        assert k.lease is not None and fences == [k.lease]
        k.check()  # leader work goes on
    finally:
        k.stop()
    assert k.lease is None and lead.released == [lead.epoch]


def test_the_leader_steps_down_when_another_node_took_over() -> None:
    lead = Lease1()
    k = keeper(lead)
    assert k.take() is not None
    k.changed.clear()
    with capture_logs() as logs:
        k.start()
        try:
            lead.take_over("mx2")
            wait(lambda: k.lease is None)
        finally:
            k.stop()
    assert k.changed.is_set()
    assert "another node took it" in k.reason
    with pytest.raises(FencedOut):
        k.check()
    lost = [e for e in logs if e["event"] == "leadership_lost"]
    assert lost and lost[0]["node"] == "mx1" and lost[0]["log_level"] == "warning"


def test_renewals_that_do_not_land_step_down_at_the_deadline_not_before() -> None:
    lead = Lease1(renew=0.4)
    k = keeper(lead)
    assert k.take() is not None
    k.start()
    try:
        lead.down = True  # the database stops answering
        time.sleep(0.2)
        assert k.lease is not None  # failing renewals: it goes on until the deadline
        wait(lambda: k.lease is None, 3)
        assert "no renewal landed before the deadline" in k.reason
    finally:
        k.stop()


def test_leader_work_past_the_deadline_is_refused_before_the_keeper_notices() -> None:
    """A process paused past its deadline (SIGSTOP, a frozen VM) finds out at its next
    check, whichever of its threads runs first."""
    lead = Lease1(renew=0.1)
    k = keeper(lead)
    assert k.take() is not None
    time.sleep(0.15)  # no keeper thread: nothing renewed
    with pytest.raises(FencedOut, match="no renewal of epoch 1 landed before its deadline"):
        k.check()
    assert k.lease is None and lead.released == [1]


def test_signer_writes_need_the_lease() -> None:
    lead, fake = Lease1(), FakeSigner()
    k = keeper(lead)
    signer = LeaderSigner(fake, k.check)
    with pytest.raises(FencedOut):
        signer.apply(list)
    assert fake.applied == 0
    k.take()
    signer.apply(list)
    assert fake.applied == 1
    assert signer.problems([]) == []  # reading what a target can sign needs no lease


def test_a_command_leads_only_while_no_daemon_does() -> None:
    lead, fences = Lease1(), list[Lease | None]()
    lead.take_over("mx2")
    lock = LeaderLock(lead, "mx1:123", retry=0.05, fence=fences.append)
    with pytest.raises(AlreadyRunning, match=r"node mx2 \(8@other\) leads"):
        lock.acquire()
    assert lock.wake_holder() == 7
    lead.holder = None
    lock.acquire()
    try:
        assert fences and fences[-1] is not None and fences[-1].node == "mx1:123"
    finally:
        lock.release()
    assert fences[-1] is None and lead.holder is None


def test_a_lease_without_deadline_never_runs_out() -> None:
    lease = Lease("solo", 1, T, T)
    assert lease.deadline == math.inf and lease.left() == math.inf


class StatusApp:
    """What `rotator status` asks the App about leadership."""

    def __init__(self, lead: Lease1) -> None:
        self.leadership = lead

    def leader(self) -> Leader | None:
        return self.leadership.current()


def test_status_says_which_node_leads_since_when_and_with_which_epoch() -> None:
    now = datetime(2026, 12, 7, 12, 5, tzinfo=UTC)
    lead = Lease1()
    app = cast(App, StatusApp(lead))
    assert leader_line(app, now) == "leader: none yet (no daemon has taken the lease)"
    lead.take_over("mx2")
    assert leader_line(app, now) == "leader mx2 since 2026-12-07T12:00:00Z (5m ago) (epoch 1)"
    assert lead.holder is not None
    lead.holder = replace(lead.holder, live=False)
    assert leader_line(app, now) == (
        "leader: none: node mx2's lease (epoch 1) ran out 2026-12-07T12:00:00Z (5m ago)"
    )
    lead.down = True
    assert leader_line(app, now).startswith("leader unknown: database db: connection refused")
    lead.shared = False  # one node: nothing to say
    assert leader_line(app, now) == ""
