from __future__ import annotations

import sys
from pathlib import Path

from .blocks import stale, write

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        old = stale(ROOT)
        for path in old:
            print(f"{path}: stale; run python -m rotator.docsite", file=sys.stderr)
        return 1 if old else 0
    if argv:
        print("usage: python -m rotator.docsite [--check]", file=sys.stderr)
        return 2
    for path in write(ROOT):
        print(f"rewrote {path}")
    return 0


raise SystemExit(main(sys.argv[1:]))
