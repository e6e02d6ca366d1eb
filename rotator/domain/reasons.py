"""Reason codes: what kind of problem a failure, a parked step, a deferral notice or a
customer-DNS finding is, for machines. Events carry one beside their human message;
status, metrics and store queries select on the code, so that rewording a message changes
nothing they count."""

from __future__ import annotations

import re
from enum import StrEnum


class Reason(StrEnum):
    # the customer's side: delegation, CNAMEs, a key to import
    AWAITING_CUSTOMER_DNS = "awaiting-customer-dns"
    CUSTOMER_KEY_NEEDED = "customer-key-needed"
    CNAMES_RUNNING_LOW = "cnames-running-low"
    # a nameserver serves something else than what rotator published
    DRIFT = "drift"
    # verification: the authoritative servers disagree (a lagging secondary), or could
    # not be asked
    NAMESERVERS_DISAGREE = "nameservers-disagree"
    NAMESERVER_UNREACHABLE = "nameserver-unreachable"
    # DNS UPDATEs to the primary
    DNS_UPDATE_FAILED = "dns-update-failed"
    DNS_TIMEOUT = "dns-timeout"
    DNS_REFUSED = "dns-refused"
    DNS_NOTAUTH = "dns-notauth"
    DNS_TSIG = "dns-tsig"
    DNS_CREDENTIAL = "dns-credential"  # a backend refused its API key or credentials
    DNS_NO_BACKEND = "dns-no-backend"  # no configured backend serves the zone
    RECORD_INVALID = "record-invalid"  # a key's record cannot be built or placed
    # signers
    SIGNER_FAILED = "signer-failed"
    SIGNER_LAGGING = "signer-lagging"  # some targets did not switch (or prove it)
    SIGNER_LOCK_BUSY = "signer-lock-busy"
    # rotator's own side
    POLICY_UNAVAILABLE = "policy-unavailable"
    KEYSTORE = "keystore"
    NO_FREE_SLOT = "no-free-slot"  # ping-pong: both selectors still in use
    INTERNAL = "internal"  # a bug, or data no check foresaw
    OTHER = "other"


# Customer-side codes: what `rotator_identities_awaiting_customer_dns` and the
# `customer-dns` failure cause count.
CUSTOMER_DNS = frozenset({Reason.AWAITING_CUSTOMER_DNS})

# "parked after 3 failures: " before a parked step's error in keys.last_error
_PARKED = re.compile(r"^parked after \d+ failures: ")

# Message texts of events recorded before events carried a code, first match wins. Used
# only for such events (and the projection rows a schema upgrade fills from them).
_LEGACY: tuple[tuple[re.Pattern[str], Reason], ...] = tuple(
    (re.compile(pattern), code)
    for pattern, code in (
        (r"awaiting customer DNS", Reason.AWAITING_CUSTOMER_DNS),
        (r"^drift:", Reason.DRIFT),
        (r"^rotation needed from customer", Reason.CUSTOMER_KEY_NEEDED),
        (r"^only \d+ pre-created CNAMEs left", Reason.CNAMES_RUNNING_LOW),
        (r"^no free ping-pong slot", Reason.NO_FREE_SLOT),
        (r"^signer targets lagging", Reason.SIGNER_LAGGING),
        (r"^refusing to publish", Reason.RECORD_INVALID),
        (r"^internal error", Reason.INTERNAL),
        (r"^cannot generate a key", Reason.KEYSTORE),
        (r"nameserver addresses disagree", Reason.NAMESERVERS_DISAGREE),
        (r"^no authoritative nameserver found", Reason.NAMESERVERS_DISAGREE),
        (r"^TSIG ", Reason.DNS_TSIG),
        (r"^REFUSED from ", Reason.DNS_REFUSED),
        (r"^NOTAUTH from ", Reason.DNS_NOTAUTH),
        (r"^timeout after \S+ sending UPDATE", Reason.DNS_TIMEOUT),
    )
)


def legacy_code(text: str) -> Reason:
    """The code of a message recorded without one (a log written before codes existed)."""
    text = _PARKED.sub("", text, count=1)
    for pattern, code in _LEGACY:
        if pattern.search(text):
            return code
    return Reason.OTHER


def code_of(code: Reason | None, text: str) -> Reason | None:
    """An event's code: its own, else the legacy one of its message (None: no message)."""
    if code is not None:
        return code
    return legacy_code(text) if text else None
