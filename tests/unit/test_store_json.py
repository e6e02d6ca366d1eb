"""store_json writes the chain hash's canonical JSON directly: it must be byte for byte what
the json module gives (store_rows.event_hash), or every hash after an upgrade breaks."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from rotator.adapters.store.json_text import payload_json, row_json, value_json
from rotator.domain import events as ev
from tests.unit.test_audit_stream import sample


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _unset(value: Any) -> Any:
    # an optional code is unset as None (an enum has no empty member)
    return None if isinstance(value, Enum) else type(value)()


@pytest.mark.parametrize("cls", list(ev.EVENT_TYPES.values()), ids=list(ev.EVENT_TYPES))
@pytest.mark.parametrize("sparse_set", [True, False])
def test_payload_json_is_the_canonical_json_of_the_payload(
    cls: type[ev.Event], sparse_set: bool
) -> None:
    hints = ev.field_types(cls)
    values = {f.name: sample(hints[f.name]) for f in dataclasses.fields(cls)}
    if not sparse_set:  # sparse flags left unset are left out of the payload
        values = {
            k: (_unset(v) if k in ev._SPARSE and not isinstance(v, tuple) else v)
            for k, v in values.items()
        }
    event = cls(**values)
    assert payload_json(event) == canonical(event.payload())


@pytest.mark.parametrize(
    "value",
    ["", "ß", 'q"uo\\te', "tab\tnl\n\x00\x1f\x7f", "🔑", None, True, False, 0, -7, 10**20,
     1.5, [1, "a"], {"b": 1, "a": [None, {"d": 2, "c": "é"}]}, ()],
)  # fmt: skip
def test_value_json_is_the_json_module(value: Any) -> None:
    assert value_json(value) == canonical(value)


def test_row_json_is_the_sorted_row() -> None:
    fields: dict[str, Any] = {
        "actor": "ops ß", "at": "2026-11-24T12:00:00.000000Z", "domain": None,
        "identity": "a.example", "key_id": None, "payload": canonical({"x": "é\n", "y": 1}),
        "prev_hash": "0" * 64, "reason": 'r"', "selector": None, "stream_id": "key:k1",
        "type": "KeyPublished", "version": 3,
    }  # fmt: skip
    args = {("type_" if k == "type" else k): v for k, v in fields.items()}
    assert row_json(**args) == canonical(fields)


def test_the_row_encoder_writes_what_the_json_module_writes() -> None:
    # a row's MAC covers this text: one character apart and every sealed row is refused
    from rotator.adapters.store.seal import _ROW_JSON, _encode_row

    rows: list[Any] = [
        (),
        ("a", 1, None, True, False, 1.5, float("nan"), -0.0, 10**20),
        ['é\u2028"\\\n\t', "\x00", "😀", Path("/x"), datetime(2026, 1, 2, tzinfo=UTC)],
        ("nested", [1, "two"], {"k": "v"}),
    ]
    for row in rows:
        assert _encode_row(row) == _ROW_JSON.encode(row)
