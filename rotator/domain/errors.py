"""One error root with a flat family (certbot style). Messages are one line, say what is
wrong and how to fix it; the CLI prints them as-is and exits non-zero."""

from __future__ import annotations

from .reasons import Reason


class RotatorError(Exception):
    """Root of every error rotator raises on purpose."""


class ConfigError(RotatorError):
    """A configuration or policy file is invalid."""


class PolicyError(ConfigError):
    """A policy file is invalid (message names file, key and problem)."""


class RecordError(RotatorError):
    """A DKIM TXT record cannot be built or parsed."""


class IllegalTransition(RotatorError):
    """An event does not apply to the key's current state. Nothing is recorded."""


class ConcurrencyError(RotatorError):
    """Another writer appended to the same stream first; re-read and decide again."""


class StoreError(RotatorError):
    """The event store could not be read or written (read-only, full, damaged)."""


class NotFound(RotatorError):
    """A named key, identity or policy does not exist."""


class InputError(RotatorError):
    """Operator input (a domain, a selector, an option) is invalid."""


class ExternalError(RotatorError):
    """A side effect failed (DNS, signer reload, filesystem). Carries a short reason, and
    its code (the class's own unless the raiser knows better)."""

    code: Reason = Reason.OTHER

    def __init__(self, reason: str, code: Reason | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if code is not None:
            self.code = code


class PublishError(ExternalError):
    """The DNS publisher did not accept an update (REFUSED, NOTAUTH, BADSIG, timeout...)."""

    code = Reason.DNS_UPDATE_FAILED


class ProbeError(ExternalError):
    """A nameserver could not be queried or its answer could not be used."""

    code = Reason.NAMESERVER_UNREACHABLE


class SignerError(ExternalError):
    """The signer configuration could not be written or reloaded."""

    code = Reason.SIGNER_FAILED


class SignerLockBusy(SignerError):
    """The signer lock stayed taken for the whole wait; the reason names the holder."""

    code = Reason.SIGNER_LOCK_BUSY


class AlreadyRunning(RotatorError):
    """A second daemon was started on the same database."""


class FencedOut(StoreError):
    """Leader work was refused: the lease it ran under was taken over or ran out (another
    node may lead now). Nothing was recorded; the daemon steps down at once."""
