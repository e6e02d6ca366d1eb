"""Names: domain input validation (IDNA 2008 via the idna package, RFC 1035 lengths) and the
zone arithmetic every mode needs (where a selector's record lives, who may hold it)."""

from __future__ import annotations

import re

import idna

from .errors import InputError

_LDH = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


def mail_domain(name: str) -> str:
    """A domain that signs or sends mail (d=, RFC 6376 3.5) follows RFC 5321: letters,
    digits and hyphens, no underscores (unlike a DNS zone such as myesp._domainkey.x)."""
    return normalize_domain(name, zone=False)


def normalize_domain(name: str, zone: bool = True) -> str:
    """Lower-case A-label form without the trailing dot; InputError naming the problem.
    Underscores are refused unless `zone` (see mail_domain)."""
    raw = name.strip().rstrip(".")
    if not raw:
        raise InputError("domain name is empty; give a name like example.com")
    labels = []
    for label in raw.split("."):
        if not label:
            raise InputError(f"domain {name!r}: empty label (two dots in a row?)")
        if label.isascii():
            label = label.lower()
        else:
            try:
                label = idna.encode(label, uts46=True).decode("ascii")
            except idna.IDNAError as exc:
                raise InputError(
                    f"domain {name!r}: label {label!r} is not valid IDNA: {exc}"
                ) from None
        if len(label) > 63:
            raise InputError(f"domain {name!r}: label {label[:20]!r}... is longer than 63 octets")
        if not _LDH.match(label):
            raise InputError(
                f"domain {name!r}: label {label!r} may only hold letters, digits, hyphens "
                "(not at either end) and underscores"
            )
        if "_" in label and not zone:
            raise InputError(
                f"domain {name!r}: label {label!r} has an underscore; a mail domain (d=) "
                "holds only letters, digits and hyphens (RFC 5321)"
            )
        labels.append(label)
    out = ".".join(labels)
    if len(out) > 253:
        raise InputError(f"domain {name!r} is longer than 253 octets")
    if len(labels) < 2:
        raise InputError(f"domain {name!r}: give a fully qualified name like example.com")
    return out


def lookup_name(selector: str, domain: str) -> str:
    """The absolute name receivers query for a selector's key (RFC 6376 3.6.2.1)."""
    return f"{selector}._domainkey.{domain}."


def cname_target(selector: str, domain: str, zone: str) -> str:
    """Where a cname/ping-pong customer's CNAME for `selector` points, in the ESP's zone."""
    return f"{selector}.{domain}.{zone}."


def is_within(name: str, zone: str) -> bool:
    """`name` is `zone` or below it (both without the trailing dot, lower case)."""
    return name == zone or name.endswith("." + zone)


def selector_seq(selector: str, esp: str) -> int | None:
    """n of a cname-mode selector "<esp><n>", else None."""
    rest = selector.removeprefix(esp)
    return int(rest) if rest != selector and rest.isdigit() else None


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(what: str, value: str, max_len: int) -> str:
    """Free text that reaches the audit log (an actor, a reason, a customer name): no
    control characters (a newline would forge a log line), at most max_len characters."""
    if _CONTROL.search(value):
        raise InputError(
            f"{what}: control characters (newlines, tabs, escapes) are not allowed: {value!r}"
        )
    if len(value) > max_len:
        raise InputError(f"{what}: at most {max_len} characters, got {len(value)}")
    return value


def pattern_domain(pattern: str) -> str:
    """The sending domain a SigningTable pattern covers: "*@acme.com" and "*@*.acme.com"
    both belong to acme.com; "" (an ESP identity signs only as a second signature)."""
    return pattern.removeprefix("*@").removeprefix("*.") if pattern else ""


def covered_by(domain: str) -> list[str]:
    """The domains whose `*@*.D` pattern would sign `domain`'s mail: its proper parents."""
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(1, len(labels))]


def wildcard_domain(pattern: str) -> str:
    """ "*@*.acme.com" -> "acme.com": the domain whose subdomains the pattern signs ("" for
    an exact pattern)."""
    return pattern.removeprefix("*@*.") if pattern.startswith("*@*.") else ""


def check_signing_pattern(pattern: str, domain: str) -> str:
    """Only the identity's own mail may be signed with its key: `*@domain` or
    `*@*.domain` (its subdomains), never `*`, another domain, whitespace or control
    characters (a newline would add a line to the signer's table)."""
    allowed = (f"*@{domain}", f"*@*.{domain}")
    if pattern not in allowed:
        raise InputError(
            f"--signing-pattern {pattern!r}: use {allowed[0]} or {allowed[1]}; a key may "
            "only sign its own domain's mail"
        )
    return pattern


def check_dns_name(name: str, what: str = "name") -> str:
    """A name a DNS message can carry: at most 253 octets, labels of 1 to 63 (RFC 1035).
    Checked when a customer is added, so a record name can never break an UPDATE later."""
    text = name.rstrip(".")
    if len(text) > 253:
        raise InputError(f"{what} {text[:40]}... is {len(text)} octets; DNS allows 253")
    for label in text.split("."):
        if not 1 <= len(label) <= 63:
            raise InputError(f"{what} {text!r}: label {label[:20]!r}... is not 1-63 octets")
    return name


def record_location(selector: str, domain: str, zone: str, via_cname: bool) -> str:
    """Where a key's TXT record lives, derived from the validated parts (never taken from a
    stored row): <selector>._domainkey.<domain>., or for CNAME modes the target in the
    ESP's zone. InputError if that is not inside `zone` or not a valid name."""
    name = cname_target(selector, domain, zone) if via_cname else lookup_name(selector, domain)
    check_dns_name(name, "record name")
    if not is_within(name.rstrip("."), zone):
        raise InputError(f"record name {name} is outside zone {zone}")
    return name


# A normal-form pattern of lower-case LDH labels (1-63 octets, no hyphen at either end), at
# least two labels; anything else goes through normalize_domain for the precise reason.
_PLAIN_PATTERN = re.compile(
    r"\*@(?:\*\.)?(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)+"
    r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
)


def pattern_problem(pattern: str) -> str | None:
    """None if `pattern` is a signing pattern rotator writes (`*@domain`, `*@*.domain`),
    else why not: checked again when a signer table is written, whatever the database says."""
    if _PLAIN_PATTERN.fullmatch(pattern) and len(pattern.lstrip("*@.")) <= 253:
        return None  # the common case, read for every key at start-up: one regex
    return _pattern_problem(pattern)


def _pattern_problem(pattern: str) -> str | None:
    rest = pattern.removeprefix("*@")
    if rest == pattern:
        return f"signing pattern {pattern!r} does not start with *@"
    domain = rest.removeprefix("*.")
    try:
        if normalize_domain(domain) != domain:
            return f"signing pattern {pattern!r} is not in normal form"
    except InputError as exc:
        return f"signing pattern {pattern!r}: {exc}"
    return None
