"""A key's life as segments of time, one per state, and the identity's timeline picture:
one bar per key, its segments coloured by state, the drain window a segment of its own.

The segments come from folding the key's events with the domain's own fold (apply_key), so
the picture cannot tell a different story than `rotator status`: a segment starts at the
event that moved the key into its state and ends at the one that moved it out."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise

from ..domain import events as ev
from ..domain.model import KeyState, apply_key
from ..domain.states import State
from .layout import STATE_COLOURS, esc, when


@dataclass(frozen=True)
class Segment:
    state: str
    start: datetime
    end: datetime
    current: bool = False  # the key is still in this state: `end` is the page's now

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class KeyBar:
    key_id: str
    selector: str
    state: str
    segments: tuple[Segment, ...]

    @property
    def start(self) -> datetime:
        return self.segments[0].start

    @property
    def end(self) -> datetime:
        return self.segments[-1].end


def key_bar(events: Iterable[ev.KeyEvent], now: datetime) -> KeyBar | None:
    """The bar of one key from its events in log order (None without a KeyGenerated). A
    destroyed key's bar ends where it was destroyed: nothing of it is left to serve."""
    key: KeyState | None = None
    changes: list[tuple[str, datetime]] = []
    for event in events:
        key = apply_key(key, event)
        if not changes or changes[-1][0] != key.state.value:
            changes.append((key.state.value, event.at))
    if key is None:
        return None
    segments = [Segment(state, start, end) for (state, start), (_, end) in pairwise(changes)]
    last, since = changes[-1]
    if last == State.DESTROYED.value:
        segments.append(Segment(last, since, since))
    else:
        segments.append(Segment(last, since, max(now, since), current=True))
    return KeyBar(key.key_id, key.selector, key.state.value, tuple(segments))


# the picture's geometry, in SVG user units (the browser scales it to the page's width)
WIDTH = 960
LABEL = 170  # the selector column left of the bars
AXIS = 24
ROW = 26
BAR = 16
MIN_SEGMENT = 2.0  # a state held for a moment stays visible


def render_timeline(bars: Sequence[KeyBar], now: datetime) -> str:
    """The inline SVG: a time axis from the first key's generation to now, one row per
    key, and a legend of the states."""
    if not bars:
        return "<p>No keys yet.</p>"
    first = min(b.start for b in bars)
    span = max((max(now, *(b.end for b in bars)) - first).total_seconds(), 1.0)
    scale = (WIDTH - LABEL - 10) / span
    height = AXIS + ROW * len(bars) + 34

    def x(at: datetime) -> float:
        return LABEL + (at - first).total_seconds() * scale

    parts = [
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'viewBox="0 0 {WIDTH} {height}" width="100%" '
        f'aria-label="key timeline from {esc(when(first))} to {esc(when(now))}">',
        f'<text x="{LABEL}" y="14">{esc(when(first))}</text>',
        f'<text x="{WIDTH - 10}" y="14" text-anchor="end">{esc(when(now))}</text>',
        f'<line x1="{LABEL}" y1="{AXIS - 4}" x2="{WIDTH - 10}" y2="{AXIS - 4}" stroke="#999"/>',
    ]
    for row, bar in enumerate(bars):
        y = AXIS + row * ROW
        parts.append(
            f'<g class="bar" data-key="{esc(bar.key_id)}" data-selector="{esc(bar.selector)}">'
            f'<text x="0" y="{y + BAR - 4}">{esc(bar.selector)}</text>'
        )
        for seg in bar.segments:
            left = x(seg.start)
            width = max((seg.end - seg.start).total_seconds() * scale, MIN_SEGMENT)
            if seg.state == State.DESTROYED.value:
                width = 4.0  # an end mark, not a stretch of time
            title = f"{seg.state}: {when(seg.start)}" + (
                " - now" if seg.current else f" - {when(seg.end)}"
            )
            parts.append(
                f'<rect class="segment" data-state="{esc(seg.state)}" x="{left:.1f}" '
                f'y="{y}" width="{width:.1f}" height="{BAR}" '
                f'fill="{STATE_COLOURS.get(seg.state, "#000")}">'
                f"<title>{esc(title)}</title></rect>"
            )
        parts.append("</g>")
    parts.append(_legend(AXIS + ROW * len(bars) + 14))
    parts.append("</svg>")
    return "".join(parts)


def _legend(y: int) -> str:
    items = []
    left = 0
    for state, colour in STATE_COLOURS.items():
        label = "draining (drain window)" if state == State.DRAINING.value else state
        items.append(
            f'<rect x="{left}" y="{y}" width="12" height="12" fill="{colour}"/>'
            f'<text x="{left + 16}" y="{y + 10}">{esc(label)}</text>'
        )
        left += 34 + 7 * len(label)  # past the label at the picture's font size
    return f'<g class="legend">{"".join(items)}</g>'
