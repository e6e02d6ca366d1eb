"""The API's operations, from the OpenAPI document the daemon serves at /openapi.json."""

from __future__ import annotations

from typing import Any, cast

from ..api.app import create_app
from ..api.state import ApiState

METHODS = ("get", "post", "put", "patch", "delete")


def document() -> dict[str, Any]:
    """The OpenAPI document (building it reads no state: the app is never served here)."""
    return create_app(cast(ApiState, None)).openapi()


def api_reference() -> str:
    lines = ["| operation | what it does |", "|---|---|"]
    for path, item in document()["paths"].items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            summary = " ".join(str(op.get("summary") or op.get("description") or "").split())
            summary = summary.replace("|", "\\|")
            lines.append(f"| `{method.upper()} {path}` | {summary} |")
    return "\n".join(lines)
