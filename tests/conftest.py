"""Integration tests carry the `integration` marker (`-m "not integration"` runs the fast
ones only). They are skipped where BIND's named is missing, except under CI (CI=true),
where a missing nameserver is a failure, never a silent skip."""

from __future__ import annotations

import os
import shutil

import pytest

# the private PostgreSQL (one per session) and a database per test, for every test package
from tests.support.postgres import postgres_cluster, postgres_url

__all__ = ["postgres_cluster", "postgres_url"]

HAVE_NAMED = bool(shutil.which("named") or os.path.exists("/usr/sbin/named"))
SIGNERS = ("/usr/sbin/opendkim", "/usr/bin/rspamd", "/usr/sbin/exim4")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("CI"):
        missing = [b for b in SIGNERS if not os.path.exists(b)]
        if missing:  # CI proves signing with real signers: never a silent skip there
            raise pytest.UsageError(
                f"CI is set but {', '.join(missing)} missing: apt-get install opendkim "
                "opendkim-tools rspamd exim4-daemon-light"
            )
    if HAVE_NAMED:
        return
    if os.environ.get("CI"):
        raise pytest.UsageError(
            "BIND's named is not installed but CI is set: apt-get install bind9"
        )
    skip = pytest.mark.skip(reason="BIND 9 named not installed (apt-get install bind9)")
    for item in items:
        if item.get_closest_marker("integration"):
            item.add_marker(skip)
