#!/usr/bin/env bash
# Regenerates requirements/lock.txt, the hash-locked list that .ci/run and deploy/quickstart.sh
# install from (pip install --require-hashes --no-deps -r requirements/lock.txt, then the project
# itself with pip install --no-deps --no-build-isolation -e .).
#
#   bash requirements/lock.sh                          re-resolve; pins that still fit are kept
#   bash requirements/lock.sh --upgrade                move every pin to the newest allowed release
#   bash requirements/lock.sh --upgrade-package NAME   move one pin (repeat for more)
#
# What goes in: pyproject.toml's dependencies and its [test] extra, transitively, plus what
# building rotator in editable mode without build isolation needs: [build-system] requires
# (setuptools), and wheel. They are piped in on stdin, hence "via -r -" in the lock.
# Every pin is "==" with the sha256 of every file PyPI serves for that release (all platforms).
# Run it after changing dependencies in pyproject.toml and commit both files together. Same inputs,
# same PyPI: same lock.txt (running it twice changes nothing).
#
# pip-tools runs from a throwaway venv, never from .venv. The lock is resolved for CPython 3.11,
# the python3 of Debian 12 that CI and the quick start use; environment markers are evaluated for
# the interpreter that runs this, so this script refuses another version.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
PIP_VERSION=26.3
PIP_TOOLS_VERSION=7.6.2

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "lock.sh: the lock is for Python 3.11 and $PYTHON is not one (set PYTHON=python3.11)" >&2
  exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m venv "$tmp/venv"
if ! "$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check \
    "pip==$PIP_VERSION" "pip-tools==$PIP_TOOLS_VERSION" >"$tmp/pip.log" 2>&1; then
  cat "$tmp/pip.log" >&2
  echo "lock.sh: installing pip-tools failed" >&2
  exit 1
fi

build_requires() {
  "$PYTHON" -c 'import tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["build-system"]["requires"]))'
  echo wheel
}

# (its log, full of setuptools warnings from building dkimpy's sdist for its metadata, is shown
# only on failure)
if ! build_requires | CUSTOM_COMPILE_COMMAND="bash requirements/lock.sh" \
    "$tmp/venv/bin/pip-compile" --quiet \
      --generate-hashes --no-reuse-hashes --allow-unsafe --strip-extras \
      --no-emit-index-url --no-emit-find-links --newline lf \
      --extra test \
      --output-file requirements/lock.txt \
      "$@" \
      pyproject.toml - >"$tmp/compile.log" 2>&1; then
  cat "$tmp/compile.log" >&2
  echo "lock.sh: pip-compile failed" >&2
  exit 1
fi
# requirements/build.txt: the build tools alone (same pins, same hashes), installed first, so
# that dkimpy (an sdist only) is built with them (--no-build-isolation) and not with a
# setuptools pip would fetch unpinned and unchecked into an isolated build environment.
"$PYTHON" - <<'PY'
import re
lock = open("requirements/lock.txt").read()
blocks = re.findall(r"^((?:setuptools|wheel)==\S+(?: \\\n(?:    .*\n?)+))", lock, re.M)
with open("requirements/build.txt", "w") as out:
    out.write("# The build tools of requirements/lock.txt (made by requirements/lock.sh)\n")
    out.write("".join(b if b.endswith("\n") else b + "\n" for b in blocks))
PY
echo "lock.sh: wrote requirements/lock.txt and requirements/build.txt" >&2
