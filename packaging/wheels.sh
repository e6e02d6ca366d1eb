#!/usr/bin/env bash
# The wheels rotator runs from, for the Debian package (packaging/deb/build.sh) and the OCI
# image (packaging/oci/build.sh):
#
#   bash packaging/wheels.sh WHEELS_DIR [BUILD_VENV]
#
# With Debian's python3 (3.11), never another python3 on PATH: a build venv with the pinned,
# hash-checked build tools (requirements/build.txt), rotator's wheel from a copy of this
# checkout's files (nothing is written into the checkout), and every runtime dependency
# exactly as pinned in requirements/runtime.txt, each download hash-checked (dkimpy, published
# as an sdist only, is built with the pinned build tools). Fails unless there is one wheel per
# pin and rotator's. BUILD_VENV, if given, keeps the build venv there (its pip installs the
# wheels); otherwise it is removed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
out="${1:?usage: bash packaging/wheels.sh WHEELS_DIR [BUILD_VENV]}"
PY="$(readlink -f /usr/bin/python3)"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "wheels.sh: /usr/bin/python3 is not Python 3.11 (Debian 12's): $PY" >&2
  exit 1
fi
if ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then
  echo "wheels.sh: Debian's python3-venv is missing (apt-get install python3-venv)" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
build="${2:-$work/build}"
pip_quiet() {
  if ! "$@" >"$work/pip.log" 2>&1; then
    cat "$work/pip.log" >&2
    echo "wheels.sh: failed: $*" >&2
    exit 1
  fi
}

"$PY" -m venv "$build"
BPIP=("$build/bin/python" -m pip --disable-pip-version-check --no-input)
pip_quiet "${BPIP[@]}" install --require-hashes --no-deps -r requirements/build.txt
mkdir -p "$work/src" "$out"
cp -a pyproject.toml README.md "$work/src/"
tar -C "$ROOT" --exclude=__pycache__ --exclude='*.pyc' -cf - rotator | tar -C "$work/src" -xf -
pip_quiet "${BPIP[@]}" wheel --no-deps --no-build-isolation -w "$out" "$work/src"
pip_quiet "${BPIP[@]}" wheel --require-hashes --no-deps --no-build-isolation \
  -w "$out" -r requirements/runtime.txt
n_pins="$(grep -c '^[A-Za-z0-9].*==' requirements/runtime.txt)"
n_wheels="$(find "$out" -maxdepth 1 -name '*.whl' | wc -l)"
if [ "$n_wheels" -ne "$((n_pins + 1))" ]; then
  echo "wheels.sh: $n_wheels wheels in $out for $n_pins pins and rotator" >&2
  exit 1
fi
