"""Selector naming: templates like "{mon}{yyyy}.{esp}" -> "nov2026.myesp" (RFC 6376 3.1)."""

from __future__ import annotations

import re
import string
from collections.abc import Container
from datetime import datetime

from .errors import InputError

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
TEMPLATE_FIELDS = frozenset({"mon", "yyyy", "yy", "mm", "dd", "hh", "mi", "ss", "unix", "esp"})
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_SUFFIXES = string.ascii_lowercase[1:]  # b..z: "nov2026.myesp" then "nov2026b.myesp"


def check_template(template: str) -> None:
    """Raise ValueError naming the unknown field, if any."""
    for _, name, spec, conv in string.Formatter().parse(template):
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS or spec or conv:
            raise ValueError(f"unknown field {{{name}}}; use {', '.join(sorted(TEMPLATE_FIELDS))}")


def render(template: str, when: datetime, esp: str) -> str:
    values = {
        "mon": MONTHS[when.month - 1],
        "yyyy": f"{when.year:04d}",
        "yy": f"{when.year % 100:02d}",
        "mm": f"{when.month:02d}",
        "dd": f"{when.day:02d}",
        "hh": f"{when.hour:02d}",
        "mi": f"{when.minute:02d}",
        "ss": f"{when.second:02d}",
        "unix": str(int(when.timestamp())),
        "esp": esp,
    }
    selector = template.format(**values).lower()
    validate_selector(selector)
    return selector


def validate_selector(selector: str) -> str:
    """A selector is a dot-separated list of LDH labels (RFC 6376 3.1 sub-domain)."""
    if not selector or len(selector) > 200:
        raise InputError(f"selector {selector!r}: must be 1-200 characters")
    for label in selector.split("."):
        if not _LABEL.match(label):
            raise InputError(
                f"selector {selector!r}: label {label!r} must be 1-63 letters, digits or "
                "hyphens, not starting or ending with a hyphen"
            )
    return selector


def choose(template: str, when: datetime, esp: str, taken: Container[str], collision: str) -> str:
    """Render the selector; on collision either add a letter suffix or refuse."""
    selector = render(template, when, esp)
    if selector not in taken:
        return selector
    if collision == "fail":
        raise InputError(
            f"selector {selector!r} is already used for this domain; change the policy's "
            'selector template or set collision = "suffix"'
        )
    first, dot, rest = selector.partition(".")
    for letter in _SUFFIXES:
        candidate = f"{first}{letter}{dot}{rest}"
        if candidate not in taken:
            return validate_selector(candidate)
    raise InputError(f"selector {selector!r}: all suffixes b-z are taken; change the template")
