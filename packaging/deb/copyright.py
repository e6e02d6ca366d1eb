"""Prints the package's /usr/share/doc/rotator/copyright: rotator's licence, then every
distribution bundled in the venv with the licence its metadata declares and where its own
licence files are. Usage: python3 copyright.py VENV VERSION"""

from __future__ import annotations

import sys
from email.parser import Parser
from pathlib import Path

MIT = """\
Permission is hereby granted, free of charge, to any person obtaining a copy of this
software and associated documentation files (the "Software"), to deal in the Software
without restriction, including without limitation the rights to use, copy, modify, merge,
publish, distribute, sublicense, and/or sell copies of the Software, and to permit persons
to whom the Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED,
INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR
PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE
FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR
OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER
DEALINGS IN THE SOFTWARE."""


def licence(meta: dict[str, str], classifiers: list[str]) -> str:
    for key in ("License-Expression", "License"):
        value = (meta.get(key) or "").strip()
        if value and "\n" not in value and len(value) < 80 and value.upper() != "UNKNOWN":
            return value
    found = [c.split("::")[-1].strip() for c in classifiers if c.startswith("License ::")]
    return ", ".join(found) or "see its licence files"


def main(venv: Path, version: str) -> None:
    out = [
        f"rotator {version}",
        "",
        "rotator: Copyright the rotator authors. Licence: MIT.",
        "",
        MIT,
        "",
        "Bundled in /opt/rotator (a Python venv: rotator's runtime dependencies, exactly as",
        "pinned in its requirements/runtime.txt). Each keeps its own licence; the full texts",
        "are in each distribution's .dist-info directory, listed below.",
        "",
    ]
    site = next(venv.glob("lib/python3*/site-packages"))
    for info in sorted(site.glob("*.dist-info"), key=lambda p: p.name.lower()):
        msg = Parser().parsestr((info / "METADATA").read_text(encoding="utf-8"), headersonly=True)
        name, ver = msg["Name"], msg["Version"]
        if name.lower() == "rotator":
            continue
        meta = {k: str(msg[k]) for k in ("License-Expression", "License") if msg[k]}
        files = sorted(
            str(p.relative_to(venv.parent.parent).as_posix())
            for p in info.rglob("*")
            if p.is_file()
            and (
                "licen" in p.name.lower()
                or "copying" in p.name.lower()
                or "notice" in p.name.lower()
                or "licenses" in p.parts
            )
        )
        out.append(f"{name} {ver}: {licence(meta, msg.get_all('Classifier') or [])}")
        out.extend(f"  /{f}" for f in files)
    out += [
        "",
        "The full texts of the common licences named above (Apache-2.0, BSD, GPL, LGPL,",
        "MPL-2.0, ...) are also in /usr/share/common-licenses/",
        "(Apache 2.0: /usr/share/common-licenses/Apache-2.0).",
    ]
    print("\n".join(out))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
