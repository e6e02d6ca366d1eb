"""Every request to Route 53's API goes through Calls: throttling and server errors are
retried with exponential backoff and jitter, within the backend's timeout; anything else
becomes one PublishError line (a refused credential with its own code)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from ....domain.errors import PublishError
from ....domain.reasons import Reason

# Route 53 takes 5 requests a second per account; a change made while an earlier one of
# the zone is still being applied gets PriorRequestNotComplete.
RETRYABLE = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "PriorRequestNotComplete",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
    }
)
CREDENTIAL = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "ExpiredToken",
        "IncompleteSignature",
        "InvalidClientTokenId",
        "MissingAuthenticationToken",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
    }
)
FIRST_WAIT = 0.2  # seconds before the first retry; doubled each time, up to LONGEST_WAIT
LONGEST_WAIT = 5.0


def error_of(exc: ClientError) -> tuple[str, int, str]:
    """(code, HTTP status, message) of an error answer. moto, the emulator the tests use,
    puts the code of an authentication error under Errors.Error instead of Error."""
    response: dict[str, Any] = dict(exc.response)
    error = response.get("Error") or {}
    if not error.get("Code"):
        error = (response.get("Errors") or {}).get("Error") or error
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    message = " ".join(str(error.get("Message") or "").split())
    return str(error.get("Code") or f"HTTP {status}"), status, message[:300]


def retryable(code: str, status: int, message: str) -> bool:
    return code in RETRYABLE or status >= 500 or "rate exceeded" in message.lower()


class Calls:
    """The client's operations by name, e.g. calls("get_change", "...", Id=...)."""

    def __init__(
        self,
        client: Any,
        timeout: float,
        where: str = "Route 53",
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.client = client
        self.timeout = timeout
        self.where = where
        self.sleep = sleep
        self.clock = clock
        self.jitter = jitter
        self.retries = 0  # throttled or failed requests sent again, for tests and benches

    def __call__(self, operation: str, what: str, **params: Any) -> dict[str, Any]:
        """`what` says what the request was for, e.g. "zone dkim.example.com"."""
        name = "".join(p.title() for p in operation.split("_"))
        started = self.clock()
        wait = FIRST_WAIT
        while True:
            try:
                return dict(getattr(self.client, operation)(**params))
            except ClientError as exc:
                code, status, message = error_of(exc)
                if not retryable(code, status, message):
                    raise self._refused(name, what, code, status, message) from None
            except (ConnectTimeoutError, ReadTimeoutError):
                raise PublishError(
                    f"timeout after {self.timeout:g}s: {name} to {self.where} for {what}",
                    Reason.DNS_TIMEOUT,
                ) from None
            except EndpointConnectionError as exc:
                raise PublishError(f"cannot reach {self.where} for {what}: {exc}") from None
            except NoCredentialsError:
                raise PublishError(
                    f"no AWS credentials for {self.where}: set credentials_file, or give the "
                    "daemon an instance role or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
                    Reason.DNS_CREDENTIAL,
                ) from None
            except BotoCoreError as exc:
                raise PublishError(f"{name} to {self.where} for {what} failed: {exc}") from None
            pause = wait / 2 + self.jitter() * wait / 2
            if self.clock() + pause - started > self.timeout:
                raise PublishError(
                    f"{self.where} still answers {code} to {name} for {what} after "
                    f"{self.timeout:g}s of retries",
                    Reason.DNS_TIMEOUT,
                )
            self.retries += 1
            self.sleep(pause)
            wait = min(wait * 2, LONGEST_WAIT)

    def _refused(self, name: str, what: str, code: str, status: int, message: str) -> PublishError:
        said = f"{code}: {message}" if message else code
        if code in CREDENTIAL or status in (401, 403):
            hint = (
                f"grant route53:{name}"
                if code.startswith("AccessDenied")
                else "check credentials_file or the daemon's AWS credentials"
            )
            return PublishError(
                f"{self.where} refused the credentials for {name} ({what}): {said} ({hint})",
                Reason.DNS_CREDENTIAL,
            )
        return PublishError(f"{self.where} refused {name} for {what}: {said}")
