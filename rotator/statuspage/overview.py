"""The overview at `/`: counts by state, every current problem, the search form and, for
a query, the identities whose domain or customer matches it."""

from __future__ import annotations

from .layout import STATE_COLOURS, esc, identity_href, page, table, time_cell, when
from .reading import OverviewData, Problem


def render_overview(view: OverviewData, root: str = "") -> str:
    parts = [
        f'<p>As of <time datetime="{esc(view.now.isoformat())}">{esc(when(view.now))}</time>; '
        f"{view.identities} identities.</p>",
        _search(view.query, root),
    ]
    if view.query:
        parts.append(_matches(view, root))
    parts.append("<h2>Keys by state</h2>")
    parts.append(
        table(
            ["State", "Keys"],
            [
                f'<td><span class="swatch" style="background:{STATE_COLOURS[state]}"></span>'
                f'{esc(state)}</td><td class="num">{count}</td>'
                for state, count in view.counts
            ],
            "counts",
        )
    )
    parts.append(f"<h2>Current problems ({len(view.problems)})</h2>")
    parts.append(render_problems(view.problems, root, "problems"))
    return page("Key rotation status", "".join(parts), root)


def render_problems(problems: tuple[Problem, ...], root: str, css_id: str) -> str:
    if not problems:
        return f'<p class="ok" id="{esc(css_id)}">No problems.</p>'
    rows = []
    for p in problems:
        name = f'<a href="{identity_href(root, p.name)}">{esc(p.name)}</a>' if p.name else "-"
        rows.append(
            f"<td>{esc(p.kind)}</td><td>{name}</td><td>{esc(p.selector)}</td>"
            f"<td>{esc(p.reason)}</td><td>{esc(p.code or '-')}</td>{time_cell(p.since)}"
        )
    return table(["Problem", "Identity", "Selector", "Reason", "Code", "Since"], rows, css_id)


def _search(query: str, root: str) -> str:
    return (
        f'<form class="search" method="get" action="{esc(root)}/" role="search">'
        '<label for="q">Domain or customer</label> '
        f'<input type="search" id="q" name="q" value="{esc(query)}"> '
        '<button type="submit">Search</button></form>'
    )


def _matches(view: OverviewData, root: str) -> str:
    head = f"<h2>Identities matching &ldquo;{esc(view.query)}&rdquo; ({len(view.matches)}"
    head += f", {view.more} more not shown)</h2>" if view.more else ")</h2>"
    if not view.matches:
        return head + '<p id="matches">None.</p>'
    rows = [
        f'<td><a href="{identity_href(root, m.identity)}">{esc(m.identity)}</a></td>'
        f"<td>{esc(m.customer or '-')}</td><td>{esc(m.policy)}</td><td>{esc(m.mode)}</td>"
        f"<td>{esc(m.active_selector)}</td><td>{esc(m.pending_selector)}</td>"
        + (
            f"<td>removed {esc(when(m.retired_at))}</td>"
            if m.retired_at
            else time_cell(m.rotation_due_at)
        )
        for m in view.matches
    ]
    headers = ["Identity", "Customer", "Policy", "Mode", "Active", "Pending", "Next rotation"]
    return head + table(headers, rows, "matches")
