"""No message goes out unsigned at a switch: a real OpenDKIM and a real rspamd sign mail
continuously while rotator switches keys under them (rotations, a policy change, standby
switches). Each message must come back signed for the domain, and the signature must
verify against the test nameservers at once; an OpenDKIM tempfail or an rspamd reply
without a signature is a failure. Departed key files must still be wiped once the
targets' grace has run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rotator.domain.model import KeyState

from .conftest import DOMAIN
from .signer_fleet import KEY_GRACE, Fleet

pytestmark = pytest.mark.integration

SENDER = f"alice@{DOMAIN}"


class Traffic(threading.Thread):
    """Messages through both signers in a loop, each one checked as it comes back."""

    def __init__(self, fleet: Fleet) -> None:
        super().__init__(daemon=True)
        self.fleet = fleet
        self.done = threading.Event()
        self.sent = {"opendkim": 0, "rspamd": 0}
        self.selectors: dict[str, set[str]] = {"opendkim": set(), "rspamd": set()}
        self.failures: list[str] = []

    def run(self) -> None:
        signers: dict[str, Callable[[str], bytes]] = {
            "opendkim": self.fleet.signed_by_opendkim,
            "rspamd": self.fleet.signed_by_rspamd,
        }
        while not self.done.is_set():
            for name, sign in signers.items():
                at = time.strftime("%H:%M:%S")
                try:
                    got = self.fleet.signatures(sign(SENDER))
                except Exception as exc:  # a tempfail (451) or a broken connection
                    self.failures.append(f"{at} {name}: {type(exc).__name__}: {exc}")
                    continue
                self.sent[name] += 1
                good = [s for d, s, ok in got if d == DOMAIN and ok]
                if not good:
                    self.failures.append(f"{at} {name}: no verifying signature: {got}")
                self.selectors[name].update(good)
            self.done.wait(0.02)

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=60)
        assert not self.is_alive(), "the traffic thread did not stop"


def switch(fleet: Fleet, seen: set[str], *command: str) -> KeyState:
    """Run `command` (none: wait for the next automatic switch) and wait until a key not in
    `seen` is active; it joins `seen`."""
    env = fleet.env
    if command:
        env.cli(*command)
    key: KeyState = env.wait_for(
        f"a new key active after {command or 'waiting'}",
        lambda: env.key_in_state(DOMAIN, "active", seen),
        90,
    )
    seen.add(key.key_id)
    return key


def standby(fleet: Fleet, seen: set[str]) -> KeyState:
    env = fleet.env
    key: KeyState = env.wait_for(
        "a verified standby key",
        lambda: next(
            (
                k
                for k in env.list_keys(DOMAIN)
                if k.state.value == "verified" and k.key_id not in seen
            ),
            None,
        ),
        90,
    )
    return key


def key_files(root: Path) -> set[str]:
    return {
        p.name.partition(".")[0]
        for d in ("opendkim-files", "rspamd-files")
        for p in (root / d / "keys").iterdir()
        if not p.name.startswith(".")
    }


@pytest.mark.timeout(600)
def test_no_message_goes_out_unsigned_through_five_switches(fleet: Fleet) -> None:
    env = fleet.env
    env.cli("domain", "add", DOMAIN, "--policy", "demo")
    env.start()
    seen: set[str] = set()
    first = switch(fleet, seen)
    traffic = Traffic(fleet)
    traffic.start()
    try:
        switch(fleet, seen, "rotate", DOMAIN, "--reason", "switch 1")
        switch(fleet, seen, "rotate", DOMAIN, "--reason", "switch 2")
        switch(
            fleet,
            seen,
            "domain", "set-policy", DOMAIN, "demo-standby", "--rotate-now",
            "--reason", "switch 3: a policy change",
        )  # fmt: skip
        for n in (4, 5):
            ready = standby(fleet, seen)
            key = switch(fleet, seen, "rotate", DOMAIN, "--reason", f"switch {n}: the standby")
            assert key.key_id == ready.key_id  # the standby took over
        switch(fleet, seen, "rotate", DOMAIN, "--reason", "switch 6")
        # past the grace of the last switch, so that its wipe happens under traffic too
        time.sleep(KEY_GRACE + 3)
    finally:
        traffic.stop()
    assert traffic.failures == [], f"{len(traffic.failures)} failed: {traffic.failures[:10]}"
    for name, sent in traffic.sent.items():
        assert sent >= 100, f"{name}: only {sent} messages"
        # the traffic spanned every switch: it was signed with each key
        assert len(traffic.selectors[name]) >= 7, (name, traffic.selectors[name])
    assert first.key_id in seen and len(seen) >= 7
    # the departed keys' files did go, once their grace had run
    active = env.key_in_state(DOMAIN, "active")
    assert active is not None
    env.wait_for(
        "only the active key's files left",
        lambda: key_files(fleet.root) == {active.key_id} or None,
        30,
    )
    assert env.stop() == 0
