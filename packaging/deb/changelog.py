"""Prints the package's Debian changelog (one entry, for the version being built, dated by
$SOURCE_DATE_EPOCH). Usage: python3 changelog.py VERSION"""

from __future__ import annotations

import os
import sys
import time


def main(version: str) -> None:
    stamp = time.gmtime(int(os.environ.get("SOURCE_DATE_EPOCH", "0")))
    when = time.strftime("%a, %d %b %Y %H:%M:%S +0000", stamp)
    maintainer = os.environ["DEB_MAINTAINER"]
    print(f"rotator ({version}) unstable; urgency=medium\n")
    print(f"  * rotator {version}, built from its source tree (CHANGELOG.md).\n")
    print(f" -- {maintainer}  {when}")


if __name__ == "__main__":
    main(sys.argv[1])
