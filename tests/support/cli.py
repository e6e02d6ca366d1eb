"""Command lines the tests repeat, spelled once."""

from __future__ import annotations


def customer_add(
    name: str, domain: str, mode: str, policy: str = "demo", **options: str
) -> list[str]:
    """`rotator customer add` arguments; options by their flag name with underscores
    (signing_domain="x" -> --signing-domain x)."""
    args = ["customer", "add", name, "--domain", domain, "--mode", mode, "--policy", policy]
    for flag, value in options.items():
        args += [f"--{flag.replace('_', '-')}", value]
    return args
