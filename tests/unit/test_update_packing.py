"""UPDATE packing: thousands of changes split into messages that all fit the DNS limit
(compression pointers cannot reach past 16 KiB, so an estimate that counts on compression
overflows: this once produced 'The DNS message is too big' for 1,000 ed25519 keys)."""

from __future__ import annotations

import base64
import threading
import time

import dns.exception
import dns.message
import dns.update
import pytest

from rotator.adapters.dns.rfc2136 import Rfc2136Publisher
from rotator.domain.errors import PublishError
from rotator.ports import RecordChange

RSA_P = base64.b64encode(b"\1" * 294).decode()


@pytest.mark.parametrize(
    "text",
    ["v=DKIM1; k=ed25519; p=" + "A" * 44, f"v=DKIM1; k=rsa; p={RSA_P}", "v=DKIM1; p=", None],
)
def test_every_message_fits_and_nothing_is_lost(text: str | None) -> None:
    pub = Rfc2136Publisher("127.0.0.1", 53, "k", base64.b64encode(b"x" * 32).decode())
    changes = [RecordChange(f"s1.myesp._domainkey.d{i}.bench.test.", 60, text) for i in range(3000)]
    messages = list(pub._messages("bench.test", changes))
    assert len(messages) > 1
    assert all(len(m.to_wire()) <= 65535 for m in messages)
    owners = {rrset.name.to_text() for m in messages for rrset in m.update}
    assert owners == {c.name for c in changes}


def test_updates_go_one_at_a_time_in_order_and_stop_at_the_first_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The next message is built while the primary works on the one before, but sent
    only once that one was accepted; a refusal stops the rest."""
    pub = Rfc2136Publisher("127.0.0.1", 53, "k", base64.b64encode(b"x" * 32).decode())
    text = f"v=DKIM1; k=rsa; p={RSA_P}"
    changes = [RecordChange(f"s1.myesp._domainkey.d{i}.bench.test.", 60, text) for i in range(3000)]
    rendered: list[int] = []
    sent: list[int] = []
    busy = threading.Lock()
    real_render = pub._render

    def render(zone: str, update: dns.update.UpdateMessage) -> bytes:
        rendered.append(update.id)
        return real_render(zone, update)

    def exchange(update: dns.update.UpdateMessage, wire: bytes) -> dns.message.Message:
        assert busy.acquire(blocking=False), "two UPDATEs in flight at once"
        try:
            time.sleep(0.01)  # the primary at work
            sent.append(update.id)
            if fail_at and len(sent) == fail_at:
                raise dns.exception.Timeout
            return dns.message.make_response(update)
        finally:
            busy.release()

    monkeypatch.setattr(pub, "_render", render)
    monkeypatch.setattr(pub, "_exchange", exchange)
    fail_at = 0
    pub.apply("bench.test", changes)
    assert sent == rendered and len(sent) == pub.last_message_count > 3
    rendered.clear()
    sent.clear()
    fail_at = 3
    with pytest.raises(PublishError, match=r"^timeout after"):
        pub.apply("bench.test", changes)
    assert len(sent) == 3 and sent == rendered[:3]  # the 4th was built, never sent
