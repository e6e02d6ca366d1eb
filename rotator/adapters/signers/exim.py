r"""Exim (4.96): one lsearch file, `dkim_senders`, read by the smtp transport's DKIM options,
plus one PKCS#8 PEM per key (Exim signs RSA and Ed25519 from one transport).

Operator side (main section, then the remote smtp transport; the directory is the target's):

    ROTATOR_DKIM = /var/lib/rotator-targets/exim
    ROTATOR_PLAN = ${lookup{${lc:${domain:$h_from:}}}partial1-lsearch{ROTATOR_DKIM/dkim_senders}}

    remote_smtp:
      driver = smtp
      dkim_domain = ${extract{d}{ROTATOR_PLAN}}
      dkim_selector = ${extract{s.$dkim_domain}{ROTATOR_PLAN}}
      dkim_private_key = ${extract{k.$dkim_selector._domainkey.$dkim_domain}\
                           {ROTATOR_PLAN}{$value}{false}}
      dkim_strict = true

Exim expands dkim_domain to a list of d= domains; for each it expands dkim_selector to a list
of selectors, and for each pair dkim_private_key (a path: a value starting with "/" is read
as a file). So one line per sender holds the whole plan:

    acme.com: d="acme.com : fbl.esp.example" s.acme.com="e1 : r1" s.fbl.esp.example="fbl1"
      k.e1._domainkey.acme.com="<key_dir>/<key_id>.pem" ...

The sender is the From header's domain (lower case; no signature when From holds several
addresses). Keys are "acme.com" (exactly that domain) and "*.acme.com" (any subdomain): Exim's
partial matching tries "a.b.acme.com", then "*.b.acme.com", "*.acme.com", so the most
specific wins. Partial matching also lets "*.acme.com" match acme.com itself, which
"*@*.acme.com" does not mean: every wildcard's own apex gets a line of its own (empty, or the
plan of an enclosing wildcard). A (d, s) pair names one DNS key, hence one key file.

The file is re-read for each delivery: a rewrite takes effect with the next message, no
reload. One file means a delivery sees the old plan or the new one, never a mix. Key files
must be readable by Debian-exim (rotator writes 0640 files with the group Debian-exim
into its setgid 2750 directory). dkim_strict = true defers a message whose key cannot be
read; with false, Exim sends it with no DKIM signature at all (not even the readable
keys'). A pair with no key (`false`) is skipped without error either way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ...domain.errors import SignerError
from ...ports import SigningEntry
from .base import (
    HEADER,
    SENDER_PATTERN,
    PemKeys,
    by_sender,
    key_file,
    plain_name,
    sender_domain,
)

SENDERS = "dkim_senders"

# The operator's lines, as in the docstring (the integration test runs Exim with these).
MAIN_OPTIONS = """\
ROTATOR_PLAN = ${lookup{${lc:${domain:$h_from:}}}partial1-lsearch{ROTATOR_DKIM/dkim_senders}}
"""
TRANSPORT_OPTIONS = """\
  dkim_domain = ${extract{d}{ROTATOR_PLAN}}
  dkim_selector = ${extract{s.$dkim_domain}{ROTATOR_PLAN}}
  dkim_private_key = ${extract{k.$dkim_selector._domainkey.$dkim_domain}\\
                       {ROTATOR_PLAN}{$value}{false}}
"""

# Values go into lsearch keys and ${extract} "quoted" values: refuse what could end a key or
# a quote, split a list (":") or a line, instead of escaping it.
_PATH = re.compile(r"/[A-Za-z0-9._/+@%=,~-]+")


def _path(value: str) -> str:
    if not _PATH.fullmatch(value) or "/../" in value + "/":
        raise SignerError(f"exim: refusing key path {value!r}: unsafe characters")
    return value


def _lookup_key(pattern: str) -> str:
    """ "*@acme.com" -> "acme.com"; "*@*.acme.com" -> "*.acme.com" (Exim's partial form)."""
    if not SENDER_PATTERN.fullmatch(pattern.lower()):
        raise SignerError(f"exim: refusing signing pattern {pattern!r}: not *@domain")
    domain = sender_domain(pattern.lower())
    return "*" + domain if domain.startswith(".") else domain


def _plan(group: Sequence[SigningEntry], key_dir: str) -> str:
    """One sender's value: d= list, selectors per d=, key path per (d, s)."""
    domains: dict[str, list[str]] = {}
    paths: dict[str, str] = {}
    for e in group:
        d, s = plain_name("exim", e.domain, "domain"), plain_name("exim", e.selector, "selector")
        domains.setdefault(d, [])
        if s not in domains[d]:
            domains[d].append(s)
        paths[f"{s}._domainkey.{d}"] = _path(f"{key_dir}/{key_file(e).rsplit('/', 1)[1]}")
    parts = [f'd="{" : ".join(domains)}"']
    parts += [f's.{d}="{" : ".join(sels)}"' for d, sels in domains.items()]
    parts += [f'k.{name}="{path}"' for name, path in paths.items()]
    return "\n  ".join(parts)


def _check_pairs(entries: Sequence[SigningEntry]) -> None:
    # A selector record holds one key: two keys for one (d, s) cannot both verify.
    seen: dict[tuple[str, str], str] = {}
    for e in entries:
        other = seen.setdefault((e.domain, e.selector), e.key_id)
        if other != e.key_id:
            raise SignerError(
                f"exim: keys {other} and {e.key_id} both claim s={e.selector} d={e.domain}"
            )


def render_senders(entries: Sequence[SigningEntry], key_dir: str) -> str:
    _check_pairs(entries)
    plans: dict[str, str] = {}
    for pattern, group in by_sender(entries).items():
        key = _lookup_key(pattern)
        if key in plans:  # lsearch would use the first line only
            raise SignerError(f"exim: signing pattern {pattern!r} is listed twice")
        plans[key] = _plan(group, key_dir)
    lines = [f"# {HEADER}", "# Read by the smtp transport; see rotator/adapters/signers/exim.py."]
    for key, plan in plans.items():
        lines.append(f"{key}: {plan}")
    for key in plans:
        apex = key.removeprefix("*.")
        if key.startswith("*.") and apex not in plans:
            # "*.acme.com" would also match acme.com: give the apex its real plan.
            parent = next(
                (f"*.{p}" for p in _parents(apex) if f"*.{p}" in plans),
                None,
            )
            lines.append(f"{apex}: {plans[parent] if parent else ''}".rstrip())
    return "\n".join(lines) + "\n"


def _parents(domain: str) -> list[str]:
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(1, len(labels))]


class EximFormat(PemKeys):
    name = "exim"

    def tables(self, entries: Sequence[SigningEntry], key_dir: str) -> dict[str, bytes]:
        return {SENDERS: render_senders(entries, key_dir).encode()}
