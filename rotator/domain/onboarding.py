"""What the customer's IT must add to their DNS, per delegation mode, in zone-file syntax."""

from __future__ import annotations

from collections.abc import Sequence

from .states import Mode

DELEGATION_TTL = 86400


def customer_records(
    mode: str, domain: str, zone: str, esp_nameservers: Sequence[str]
) -> list[str]:
    """Zone-file lines for the customer's zone; empty when they need to add nothing."""
    if mode == Mode.NS_DELEGATION:
        if not esp_nameservers:
            return [
                f"; {zone}: the ESP's nameserver names are unknown: set dns.esp_nameservers "
                "in rotator.toml, then run `rotator customer check`"
            ]
        return [
            f"{zone}. {DELEGATION_TTL} IN NS {ns.rstrip('.')}." for ns in sorted(esp_nameservers)
        ]
    return []


def explain(mode: str, customer_domain: str, signing_domain: str, zone: str) -> str:
    if mode == Mode.CNAME:
        return (
            f"Create these CNAMEs in the {customer_domain} zone, once: each future key uses "
            "the next one. rotator warns when few are left."
        )
    if mode == Mode.PING_PONG:
        return (
            f"Create these CNAMEs in the {customer_domain} zone, once: keys alternate between "
            "them for ever."
        )
    if mode == Mode.CUSTOMER_KEY:
        return (
            f"The customer generates keys and publishes them under {customer_domain}; the ESP "
            "imports each private key (`rotator customer import-key`) and signs once the "
            "record below is visible on every nameserver of the customer's zone."
        )
    if mode == Mode.NS_DELEGATION:
        return (
            f"Delegate {zone} to the ESP's DKIM nameservers by adding these records to the "
            f"{customer_domain} zone. Nothing else is ever needed: keys rotate inside it."
        )
    return (
        f"Nothing to add: mail from {customer_domain} is signed with d={signing_domain}, "
        f"a domain the ESP controls (zone {zone})."
    )
