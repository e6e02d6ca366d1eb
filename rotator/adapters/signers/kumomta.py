"""KumoMTA: the TOML data file of the `dkim_sign` policy helper (assets/policy-extras/
dkim_sign.lua), plus one PKCS#8 PEM per key (the helper's RSA and Ed25519 signers read both).

Operator side, in the policy (signing last, after anything that edits the message):

    local dkim_sign = require 'policy-extras.dkim_sign'
    local dkim_signer = dkim_sign:setup { '/var/lib/rotator-targets/kumomta/dkim_data.toml' }
    kumo.on('smtp_server_message_received', function(msg) dkim_signer(msg) end)
    kumo.on('http_message_generated', function(msg) dkim_signer(msg) end)

The helper caches the file for up to 5 minutes and re-reads it on a config epoch bump: either
keep the target under /opt/kumomta/etc (watched by default) or add it with
kumo.set_config_monitor_globs, or bump after each rewrite
(`curl -X POST http://127.0.0.1:8000/api/admin/bump-config-epoch`). Later files given to
setup() override this one's [base] keys (headers, additional_signatures).

What the helper can express, read from its source (KumoMTA is not packaged for Debian, so this
format is checked against the helper's code, not a running kumod):
  [domain."acme.com"]  one signature for mail whose From domain is acme.com, always with
      d= that From domain (selector, algo "sha256" | "ed25519", filename).
  [signature."<name>"] + base.additional_signatures: a signature with its own d=, added to
      EVERY message the policy signs, whatever its sender.
So rotator renders: a customer's own signature as its domain block, and the ESP's
feedback-loop signature(s) as additional signatures, which is exact only when every sender
carries the same ESP signatures (KumoMTA then also adds them to senders rotator does not list).
Everything else cannot be signed exactly: two own signatures for one sender (RSA + Ed25519),
a third-party d=, a subdomain pattern (the helper would sign d=<the subdomain>), ESP
signatures that differ from those the other senders carry. Onboarding refuses such a sender
(Signer.problems); one already in the database (recorded before that check) is left out of
this target, named in the target's result, rather than making the file unwritable for every
other sender (see `refused`). Those need a custom policy (e.g. reading the rotator-signing/1
JSON file, jsonfile.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from ...domain.errors import SignerError
from ...ports import SigningEntry
from .base import (
    HEADER,
    PLAIN_NAME,
    SENDER_PATTERN,
    PemKeys,
    by_sender,
    key_file,
    sender_domain,
)

DATA = "dkim_data.toml"
ALGO = {"rsa": "sha256", "ed25519": "ed25519"}
# RFC 6376 section 5.4.1's recommended list, as in KumoMTA's documentation; signer creation
# fails without a header list.
HEADERS = (
    "From", "Reply-To", "Subject", "Date", "To", "Cc", "Resent-Date", "Resent-From",
    "Resent-To", "Resent-Cc", "In-Reply-To", "References", "List-Id", "List-Help",
    "List-Unsubscribe", "List-Subscribe", "List-Post", "List-Owner", "List-Archive",
)  # fmt: skip

_TEXT = re.compile(r"[A-Za-z0-9._+@%=,:~-]+")
_PATH = re.compile(r"/[A-Za-z0-9._/+@%=,:~-]+")


def _q(value: str, what: str, rx: re.Pattern[str] = PLAIN_NAME) -> str:
    """A TOML basic string; refuse (not escape) anything outside plain names and paths."""
    if not rx.fullmatch(value):
        raise SignerError(f"kumomta: refusing {what} {value!r}: unsafe characters")
    return json.dumps(value)


def _block(header: str, e: SigningEntry, key_dir: str, extra: Sequence[str] = ()) -> list[str]:
    if e.algorithm not in ALGO:
        raise SignerError(f"kumomta: key {e.key_id}: unknown algorithm {e.algorithm!r}")
    path = f"{key_dir}/{key_file(e).rsplit('/', 1)[1]}"
    return [
        "",
        header,
        *extra,
        f"selector = {_q(e.selector, 'selector')}",
        f'algo = "{ALGO[e.algorithm]}"',
        f"filename = {_q(path, 'key path', _PATH)}",
    ]


def _sign_id(e: SigningEntry) -> tuple[str, str, str]:
    return (e.domain, e.selector, e.key_id)


def _sender_problem(pattern: str, group: Sequence[SigningEntry], seen: set[str]) -> str:
    """Why the helper cannot sign this one sender exactly ("": it can); `seen` collects the
    sender domains met so far (a domain block holds one sender)."""
    if not SENDER_PATTERN.fullmatch(pattern.lower()):
        return "not a *@domain signing pattern"
    domain = sender_domain(pattern.lower())
    if domain in seen:
        return "listed twice"
    seen.add(domain)
    for e in group:
        if e.algorithm not in ALGO:
            return f"key {e.key_id}: unknown algorithm {e.algorithm!r}"
        if not (PLAIN_NAME.fullmatch(e.domain) and PLAIN_NAME.fullmatch(e.selector)):
            return f"key {e.key_id}: d= or s= is not a plain DNS name"
        if not _TEXT.fullmatch(e.key_id):
            return f"key id {e.key_id!r}: unsafe characters"
    own = [e for e in group if not e.second]
    if domain.startswith("."):
        return "subdomain patterns are signed with d=<the subdomain>"
    if len(own) > 1:
        return f"{len(own)} own signatures; a domain block holds one"
    if own and own[0].domain != domain:
        return f"d={own[0].domain} is not the sender domain {domain}"
    return ""


EspSet = tuple[tuple[str, str, str], ...]


def _names(esp: EspSet) -> str:
    return ", ".join(f"{s}/{d}" for d, s, _ in esp) or "none"


def _esp_set(group: Sequence[SigningEntry]) -> EspSet:
    return tuple(sorted(_sign_id(e) for e in group if e.second))


def check(entries: Sequence[SigningEntry]) -> list[str]:
    """Why the helper cannot sign exactly these entries (empty: it can)."""
    problems = []
    esp_sets: dict[EspSet, list[str]] = {}
    seen: set[str] = set()
    for pattern, group in by_sender(entries).items():
        problem = _sender_problem(pattern, group, seen)
        if problem:
            problems.append(f"{pattern}: {problem}")
        if SENDER_PATTERN.fullmatch(pattern.lower()):
            esp_sets.setdefault(_esp_set(group), []).append(pattern)
    if len(esp_sets) > 1:
        detail = "; ".join(f"{_names(esp)} for {', '.join(p)}" for esp, p in esp_sets.items())
        problems.append(f"ESP signatures differ between senders ({detail})")
    return problems


def refused(entries: Sequence[SigningEntry], beside: Sequence[SigningEntry] = ()) -> dict[str, str]:
    """The senders (signing patterns) of `entries` the helper cannot sign exactly, each with
    why, so that the others can be written without them. The ESP signatures every sender
    must carry are those most senders carry: of `beside` (what the target signs already)
    when given, else of `entries` (ties: the larger set). Costs one pass over the entries."""
    out: dict[str, str] = {}
    seen: set[str] = set()
    esp_of: dict[str, EspSet] = {}
    for pattern, group in by_sender(entries).items():
        problem = _sender_problem(pattern, group, seen)
        if problem:
            out[pattern] = problem
        else:
            esp_of[pattern] = _esp_set(group)
    counts: dict[EspSet, int] = {}
    for esp in (_esp_set(g) for g in by_sender(beside).values()) if beside else esp_of.values():
        counts[esp] = counts.get(esp, 0) + 1
    if counts:
        common = max(counts, key=lambda esp: (counts[esp], len(esp), esp))
        for pattern, esp in esp_of.items():
            if esp != common:
                out[pattern] = (
                    f"ESP signatures {_names(esp)} where the other senders carry "
                    f"{_names(common)} (additional_signatures go on every message)"
                )
    return out


def render_data(entries: Sequence[SigningEntry], key_dir: str) -> str:
    for e in entries:
        _q(e.signing_pattern.lower(), "signing pattern", SENDER_PATTERN)
        _q(e.domain, "domain")
        _q(e.selector, "selector")
    problems = check(entries)
    if problems:
        raise SignerError(
            "kumomta: the dkim_sign helper cannot sign these entries exactly: "
            + "; ".join(problems)
        )
    groups = by_sender(entries)
    esp = {e.key_id: e for group in groups.values() for e in group if e.second}
    esp_sorted = sorted(esp.values(), key=_sign_id)
    lines = [
        f"# {HEADER}",
        "# Data file of KumoMTA's policy-extras/dkim_sign.lua; see",
        "# rotator/adapters/signers/kumomta.py.",
        "",
        "[base]",
        "additional_signatures = ["
        + ", ".join(_q(e.key_id, "key id", _TEXT) for e in esp_sorted)
        + "]",
        "headers = [" + ", ".join(json.dumps(h) for h in HEADERS) + "]",
    ]
    for pattern, group in groups.items():
        domain = sender_domain(pattern.lower())
        for e in group:
            if not e.second:
                lines += _block(f"[domain.{_q(domain, 'sender domain')}]", e, key_dir)
    for e in esp_sorted:
        header = f"[signature.{_q(e.key_id, 'key id', _TEXT)}]"
        extra = [f"domain = {_q(e.domain, 'domain')}", 'policy = "Always"']
        lines += _block(header, e, key_dir, extra)
    return "\n".join(lines) + "\n"


class KumoMtaFormat(PemKeys):
    name = "kumomta"

    def refused(
        self, entries: Sequence[SigningEntry], beside: Sequence[SigningEntry] = ()
    ) -> dict[str, str]:
        return refused(entries, beside)

    def tables(self, entries: Sequence[SigningEntry], key_dir: str) -> dict[str, bytes]:
        return {DATA: render_data(entries, key_dir).encode()}
