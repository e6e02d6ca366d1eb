"""The installer of a signer target's files. rotator uses it in-process for a local target,
and this directory runs on its own (Python 3 standard library only, nothing of rotator) as
the installer of a target that must be written as the signer's user or on another host:

    rotator ... | python3 -I /path/to/installer /var/lib/opendkim/rotator

It reads a bundle on stdin (bundles.py) and writes the files (files.py). Version 4, what
rotator sends, comes a JSON line at a time and is installed as it comes, so that no part of
it is ever whole in memory (a million key files): {"version": 4, "manage_keys": bool,
"hold": bool}, then {"remove": [paths]} lines (a partial bundle), {"table": path, "mode":
"0640", "data": base64} lines (a table's chunks in order), {"key": path, "mode": "0600",
"data": base64} lines, and last {"end": {"tables": n, "keys": n}}: a stream cut short (no
end, or other counts) installs no table and wipes nothing. Versions 1 to 3 are one JSON
document: {"version": 1, "keys": {path: {"data": base64, "mode": "0600"}}, "tables": {...}}
with paths relative to the directory ("keys/ab12.pem", "KeyTable"); version 2 may be
partial ("remove": [paths]), version 3 complete with "hold": true (key files it does not
list stay, for a signer's old workers, and are named back in "held"). Run it as the
signer's user (OpenDKIM wants its keys owned by itself or root). It prints one JSON line,
{"written": n, "unchanged": n, "removed": n} (and "held": [names] for a held bundle), or
exits 1 with one line on stderr.
"""

from __future__ import annotations

from .bundles import MAX_LINE, STREAM_VERSION, VERSION, apply_bundle, main, read_stream
from .files import InstallError, install

__all__ = [
    "MAX_LINE",
    "STREAM_VERSION",
    "VERSION",
    "InstallError",
    "apply_bundle",
    "install",
    "main",
    "read_stream",
]
