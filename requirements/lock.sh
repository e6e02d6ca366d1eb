#!/usr/bin/env bash
# Regenerates requirements/lock.txt, the hash-locked list that .ci/run and deploy/quickstart.sh
# install from (and requirements/build.txt and requirements/runtime.txt, parts of it: see below) (pip install --require-hashes --no-deps -r requirements/lock.txt, then the project
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
# requirements/runtime.txt: what rotator needs to run and nothing else (pyproject.toml's
# dependencies without extras, build tools or test tools), for the Debian package and the OCI
# image (packaging/). It is resolved again with every pin constrained to lock.txt's, then each of
# its pins is checked to carry exactly lock.txt's hashes: the same pins, the same hashes.
sed -n 's/^\([A-Za-z0-9][A-Za-z0-9._-]*==[^ ]*\) .*/\1/p' requirements/lock.txt >"$tmp/pins.txt"
if ! echo "-c $tmp/pins.txt" | CUSTOM_COMPILE_COMMAND="bash requirements/lock.sh" \
    "$tmp/venv/bin/pip-compile" --quiet \
      --generate-hashes --no-reuse-hashes --allow-unsafe --strip-extras \
      --no-emit-index-url --no-emit-find-links --newline lf \
      --output-file "$tmp/runtime.txt" \
      pyproject.toml - >"$tmp/compile-runtime.log" 2>&1; then
  cat "$tmp/compile-runtime.log" >&2
  echo "lock.sh: pip-compile of the runtime closure failed" >&2
  exit 1
fi
"$PYTHON" - "$tmp/runtime.txt" <<'PY'
import re
import sys

def blocks(text):
    """name==version -> (the pin line and its hash lines, the sorted hashes)"""
    out = {}
    for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*==\S+)((?: \\\n    --hash=\S+)+)", text, re.M):
        out[m.group(1).lower()] = (m.group(0), sorted(re.findall(r"--hash=(\S+)", m.group(2))))
    return out

lock = blocks(open("requirements/lock.txt").read())
runtime_text = open(sys.argv[1]).read()
runtime = blocks(runtime_text)
if not runtime:
    sys.exit("lock.sh: the runtime closure is empty")
for pin, (_, hashes) in runtime.items():
    if pin not in lock:
        sys.exit(f"lock.sh: runtime pin {pin} is not in requirements/lock.txt")
    if lock[pin][1] != hashes:
        sys.exit(f"lock.sh: runtime pin {pin} has other hashes than requirements/lock.txt")
# the constraints came in on stdin ("-r -", "-c /tmp/..."): keep them out of the "via" notes
out_lines, via = [], None
for line in runtime_text.splitlines() + [""]:
    if via is not None and line.startswith("    #   "):
        via.append(line[8:])
        continue
    if via is not None:
        kept = [v for v in via if not v.startswith(("-r ", "-c "))]
        if len(kept) == 1:
            out_lines.append("    # via " + kept[0])
        elif kept:
            out_lines += ["    # via"] + ["    #   " + v for v in kept]
        via = None
    if line == "    # via":
        via = []
    elif line.startswith("    # via "):
        via = [line[10:]]
    else:
        out_lines.append(line)
text = "\n".join(out_lines).rstrip("\n") + "\n"
with open("requirements/runtime.txt", "w") as out:
    out.write(text)
PY
echo "lock.sh: wrote requirements/lock.txt, requirements/build.txt and requirements/runtime.txt" >&2
