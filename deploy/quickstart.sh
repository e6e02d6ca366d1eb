#!/usr/bin/env bash
# rotator quick start on a fresh Debian machine.
#   bash deploy/quickstart.sh demo [SECONDS]   the daemon rotating keys on two local BIND servers
#   bash deploy/quickstart.sh test [ARGS...]   the test suite (ruff, mypy --strict, unit, integration)
# Both install what is missing first: bind9 + dnsutils (and knot for the tests) from apt, and
# rotator in ./.venv (pip).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

install_system() {
  local missing=()
  # the tests also run a Knot DNS secondary beside BIND
  if [ "${1:-}" = test ]; then
    command -v knotd >/dev/null 2>&1 || [ -x /usr/sbin/knotd ] || missing+=(knot)
    # the signers the tests run for real
    [ -x /usr/sbin/opendkim ] || missing+=(opendkim opendkim-tools)
    [ -x /usr/bin/rspamd ] || missing+=(rspamd)
    [ -x /usr/sbin/exim4 ] || missing+=(exim4-daemon-light)
    # the browser the status page is opened in
    [ -x /usr/bin/chromedriver ] || missing+=(chromium chromium-driver)
    # the DNS backends' servers, and PostgreSQL for the shared store
    [ -x /usr/sbin/pdns_server ] || missing+=(pdns-server pdns-backend-sqlite3)
    [ -x /usr/sbin/tinydns ] || missing+=(tinydns)
    [ -x /usr/sbin/nsd ] || missing+=(nsd)
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  fi
  command -v named >/dev/null 2>&1 || [ -x /usr/sbin/named ] || missing+=(bind9)
  command -v dig >/dev/null 2>&1 || missing+=(bind9-dnsutils)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "quickstart: installing ${missing[*]} (apt-get)" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

install_python() {
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ] \
      || [ requirements/lock.txt -nt .venv/.installed ]; then
    echo "quickstart: installing rotator and its test tools into .venv (pip)" >&2
    # the pinned, hash-checked dependencies (requirements/lock.txt), then rotator from this checkout
    if ! { .venv/bin/python -m pip install -q --disable-pip-version-check --require-hashes \
             --no-deps -r requirements/build.txt \
           && .venv/bin/python -m pip install -q --disable-pip-version-check --require-hashes \
             --no-deps --no-build-isolation -r requirements/lock.txt \
           && .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps \
             --no-build-isolation -e .; } >.venv/pip.log 2>&1; then
      cat .venv/pip.log >&2
      echo "quickstart: pip install failed (log above, also in .venv/pip.log)" >&2
      exit 1
    fi
    touch .venv/.installed
  fi
}

export PATH="$PWD/.venv/bin:$PATH:/usr/sbin:/sbin"
cmd="${1:-}"
shift || true
case "$cmd" in
  demo)
    install_system
    install_python
    exec rotator demo --seconds "${1:-45}"
    ;;
  test)
    install_system test
    install_python
    exec python -m pytest "$@"
    ;;
  *)
    echo "usage: bash deploy/quickstart.sh demo [SECONDS] | test [PYTEST ARGS]" >&2
    exit 2
    ;;
esac
