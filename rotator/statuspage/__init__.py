"""The operator status page: HTML rendered on the server from the app's read side (counts
by state, current problems, search, each identity's key timeline). No HTTP framework and
no adapter here: the API serves these strings."""

from __future__ import annotations

from .identity import render_identity
from .layout import render_login
from .overview import render_overview
from .reading import (
    IdentityData,
    OverviewData,
    Problem,
    StatusReader,
    build_identity,
    build_overview,
)
from .timeline import KeyBar, Segment, key_bar

__all__ = [
    "IdentityData",
    "KeyBar",
    "OverviewData",
    "Problem",
    "Segment",
    "StatusReader",
    "build_identity",
    "build_overview",
    "key_bar",
    "render_identity",
    "render_login",
    "render_overview",
]
