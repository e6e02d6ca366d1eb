"""Each recorded event is one log line at its level (a failure a warning); an event whose
level is filtered out costs nothing: its payload is not even built."""

from __future__ import annotations

import io
import json
import logging

import pytest

from rotator.app.recording import log_event
from rotator.domain import events as ev
from rotator.logging import configure
from tests.unit.test_machine_model import failed, ids


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_an_event_is_one_line_at_its_level() -> None:
    stream = io.StringIO()
    configure("json", level=logging.INFO, stream=stream)
    log_event(ev.KeyPublished(**ids(1), server="ns1"))
    log_event(failed(2, attempt=1, retry_in=5))
    published, failure = lines(stream)
    assert published["event"] == "key_published" and published["level"] == "info"
    assert published["domain"] == "example.com" and published["server"] == "ns1"
    assert failure["event"] == "action_failed" and failure["level"] == "warning"


def test_a_filtered_event_builds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    configure("json", level=logging.WARNING, stream=stream)

    def payload(self: ev.Event) -> dict[str, object]:
        raise AssertionError("the payload of a filtered event was built")

    monkeypatch.setattr(ev.KeyPublished, "payload", payload)
    log_event(ev.KeyPublished(**ids(1), server="ns1"))
    log_event(failed(2, attempt=1, retry_in=5))  # a warning still goes out
    assert [line["event"] for line in lines(stream)] == ["action_failed"]
