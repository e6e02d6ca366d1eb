"""Process-level protection of key material: no core dumps (a crash must not write private
keys to disk) and not dumpable (other processes of the same user cannot ptrace or read
/proc/PID/mem). The systemd unit adds LimitCORE=0 and MemorySwapMax=0."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import resource

PR_SET_DUMPABLE = 4


def harden_process() -> None:
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:  # pragma: no cover - every Linux has one
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(libc_name, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def dumpable() -> bool:
    """Whether this process may be dumped or ptraced (for the tests)."""
    libc_name = ctypes.util.find_library("c")
    assert libc_name is not None
    return bool(ctypes.CDLL(libc_name).prctl(3, 0, 0, 0, 0))  # PR_GET_DUMPABLE
