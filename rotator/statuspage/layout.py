"""The page frame every view shares: escaping, times, the stylesheet, the login form.

Every value that comes from the log (domains, customer names, error messages) is data and
goes through `esc`; nothing here or in the views puts a raw string into the markup.
"""

from __future__ import annotations

import html
from datetime import datetime
from urllib.parse import quote, urlencode

# the colour of each key state: the timeline's segments and the counts' swatches share it
STATE_COLOURS: dict[str, str] = {
    "generated": "#b0bec5",
    "published": "#90caf9",
    "verified": "#4fc3f7",
    "active": "#43a047",
    "draining": "#fb8c00",
    "revoked": "#e53935",
    "destroyed": "#424242",
}

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #212121; max-width: 78rem; }
h1 { font-size: 1.4rem; margin: 0 0 1rem; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 0.5rem; }
nav { margin-bottom: 1rem; }
nav a { margin-right: 1rem; }
table { border-collapse: collapse; margin: 0.25rem 0 1rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left;
         vertical-align: top; font-size: 0.9rem; }
th { background: #f5f5f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.swatch { display: inline-block; width: 0.8rem; height: 0.8rem; margin-right: 0.35rem;
          vertical-align: middle; border-radius: 2px; }
.ok { color: #2e7d32; }
.error { color: #c62828; }
code { background: #f5f5f5; padding: 0 0.2rem; }
form.search input[type=search] { width: 22rem; padding: 0.3rem; }
svg.timeline text { font-size: 11px; font-family: system-ui, sans-serif; }
"""


def esc(value: object) -> str:
    """A value as text in HTML (an element's content or a quoted attribute)."""
    return html.escape(str(value), quote=True)


def when(at: datetime | None) -> str:
    """A UTC time in one fixed form; '-' for none."""
    if at is None:
        return "-"
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def time_cell(at: datetime | None) -> str:
    if at is None:
        return "<td>-</td>"
    return f'<td><time datetime="{esc(at.isoformat())}">{esc(when(at))}</time></td>'


def identity_href(root: str, identity: str) -> str:
    return f"{esc(root)}/identity?{esc(urlencode({'name': identity}, quote_via=quote))}"


def table(headers: list[str], rows: list[str], css_id: str = "") -> str:
    """A table of rows already rendered (each a string of <td>s); no header row without
    headers."""
    ident = f' id="{esc(css_id)}"' if css_id else ""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    thead = f"<thead><tr>{head}</tr></thead>" if headers else ""
    body = "".join(f"<tr>{r}</tr>" for r in rows)
    return f"<table{ident}>{thead}<tbody>{body}</tbody></table>"


def page(title: str, body: str, root: str = "", nav: bool = True) -> str:
    links = (
        f'<nav><a href="{esc(root)}/">Overview</a></nav>' if nav else ""
    )  # the one way back from every page
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} - rotator</title><style>{CSS}</style></head>"
        f"<body>{links}<h1>{esc(title)}</h1>{body}</body></html>\n"
    )


def render_login(error: str | None = None, action: str = "/login") -> str:
    """The token prompt: a plain form posting `token`. Checking it and keeping it (a
    cookie) is the HTTP layer's part."""
    problem = f'<p class="error" role="alert">{esc(error)}</p>' if error else ""
    form = (
        f'<form method="post" action="{esc(action)}">'
        '<label for="token">API token (read scope)</label> '
        '<input type="password" id="token" name="token" autocomplete="off" required> '
        '<button type="submit">Sign in</button></form>'
    )
    return page("Sign in", problem + form, nav=False)
