"""Every metric the daemon exports, read from its declarations in rotator/metrics (a metric
is declared as `Counter("rotator_...", "help", ...)` or a `...MetricFamily` of a collector)."""

from __future__ import annotations

import ast
from pathlib import Path

KINDS = {
    "Counter": "counter",
    "Gauge": "gauge",
    "Histogram": "histogram",
    "CounterMetricFamily": "counter",
    "GaugeMetricFamily": "gauge",
    "HistogramMetricFamily": "histogram",
    "_gauge": "gauge",  # the store collector's own GaugeMetricFamily makers
    "_by_action": "gauge",
}
SOURCES = Path(__file__).resolve().parents[1] / "metrics"


def declared() -> list[tuple[str, str, str]]:
    """(name, type, help) of every metric declared in rotator/metrics, sorted by name."""
    found: dict[str, tuple[str, str, str]] = {}
    for path in sorted(SOURCES.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Tuple) and len(node.elts) >= 2:
                # (name, help, value) rows the collector turns into gauges in a loop
                kind, (name, text) = "_gauge", node.elts[:2]
            elif isinstance(node, ast.Call) and len(node.args) >= 2:
                func = node.func
                kind = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                name, text = node.args[0], node.args[1]
            else:
                continue
            if (
                kind in KINDS
                and isinstance(name, ast.Constant)
                and isinstance(name.value, str)
                and name.value.startswith("rotator_")
                and isinstance(text, ast.Constant)
            ):
                found[name.value] = (name.value, KINDS[kind], str(text.value))
    return sorted(found.values())


def metric_reference() -> str:
    lines = ["| metric | type | meaning |", "|---|---|---|"]
    lines += [f"| `{n}` | {k} | {h} |" for n, k, h in declared()]
    return "\n".join(lines)
