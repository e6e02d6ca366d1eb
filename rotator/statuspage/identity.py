"""One identity's page: what it is, its problems, the timeline of its keys and its
history in the log."""

from __future__ import annotations

from .layout import esc, page, table, time_cell, when
from .overview import render_problems
from .reading import IdentityData
from .timeline import render_timeline


def render_identity(view: IdentityData, root: str = "") -> str:
    s = view.summary
    facts = [
        ("Domain", s.domain),
        ("Customer", s.customer or "-"),
        ("Policy", s.policy),
        ("Mode", s.mode),
        ("Active selector", s.active_selector),
        ("Pending selector", s.pending_selector),
        ("Next rotation", when(s.rotation_due_at)),
    ]
    if s.retired_at:
        facts.append(("Removed", when(s.retired_at)))
    parts = [
        table([], [f"<th>{esc(k)}</th><td>{esc(v)}</td>" for k, v in facts], "facts"),
        f"<h2>Problems ({len(view.problems)})</h2>",
        render_problems(view.problems, root, "problems"),
        "<h2>Keys</h2>",
        render_timeline(view.bars, view.now),
        _keys(view),
        "<h2>History</h2>",
        table(
            ["At", "Event", "Selector", "Detail"],
            [
                f"{time_cell(h.at)}<td>{esc(h.event)}</td><td>{esc(h.selector)}</td>"
                f"<td>{esc(h.detail)}</td>"
                for h in view.history
            ],
            "history",
        ),
    ]
    return page(s.identity, "".join(parts), root)


def _keys(view: IdentityData) -> str:
    """The timeline as a table too: the exact times behind each bar."""
    rows = []
    for bar in view.bars:
        steps = ", ".join(
            f"{seg.state} {when(seg.start)}" + (" (now)" if seg.current else "")
            for seg in bar.segments
        )
        rows.append(
            f"<td>{esc(bar.selector)}</td><td>{esc(bar.key_id)}</td><td>{esc(bar.state)}</td>"
            f"<td>{esc(steps)}</td>"
        )
    return table(["Selector", "Key", "State", "States since"], rows, "keys")
