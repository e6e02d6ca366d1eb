"""Event types (their meaning and fields), key states and reason codes, from the domain."""

from __future__ import annotations

import dataclasses
import inspect

from ..domain.events import EVENT_TYPES, Event
from ..domain.reasons import Reason
from ..domain.states import State

_BASE = {f.name for f in dataclasses.fields(Event)}


def _doc(cls: type) -> str:
    text = " ".join((inspect.getdoc(cls) or "").split())
    return "" if text.startswith(f"{cls.__name__}(") else text  # dataclass's own signature


def event_reference() -> str:
    lines = ["| event | meaning | fields |", "|---|---|---|"]
    for name, cls in sorted(EVENT_TYPES.items()):
        fields = [f.name for f in dataclasses.fields(cls) if f.name not in _BASE]
        lines.append(f"| `{name}` | {_doc(cls)} | {', '.join(f'`{f}`' for f in fields)} |")
    return "\n".join(lines)


def state_reference() -> str:
    return "\n".join(["| state |", "|---|", *(f"| `{s.value}` |" for s in State)])


def reason_reference() -> str:
    return "\n".join(["| code |", "|---|", *(f"| `{r.value}` |" for r in Reason)])
