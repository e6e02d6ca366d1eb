"""`python3 -I /path/to/installer DIRECTORY < bundle`: the installer on its own."""

from __future__ import annotations

import importlib
import os
import sys

if __package__:
    from .bundles import main
else:  # run as a directory: import it as the package it is, whatever its name
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[0] = os.path.dirname(here)
    main = importlib.import_module(os.path.basename(here) + ".bundles").main

sys.exit(main(sys.argv))
