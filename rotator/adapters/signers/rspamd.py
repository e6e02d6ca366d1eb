"""rspamd (3.4): one include file for the dkim_signing module plus one key file per key.

Operator side, in local.d/dkim_signing.conf (the module's own switches stay there):

    .include "/var/lib/rotator-targets/rspamd/dkim_signing.conf"

then `systemctl reload rspamd` (SIGHUP) after every rewrite.

Why not plain `domain { <sender> { selectors [ ... ] } }` blocks: rspamd builds one signature
per selector entry from its `selector` and `path` only, and always signs with d= the sender's
(From header, or eSLD with use_esld) domain. A `domain = ...` key inside a selector entry is
ignored (lua_dkim_tools.lua, 3.4 and current master; measured: it signs d=<sender> with the
ESP's key, which does not verify). The ESP's feedback-loop signature (d=fbl.esp.example) and
third-party d= cannot be expressed that way. The module's `sign_condition` can: it returns the
whole list of {domain, selector, key} to sign with. So the file holds

  rotator_senders { "acme.com" = [ { domain = ...; selector = ...; path = ...; }, ... ]; }
  sign_condition = <<EOD ... EOD;   (fixed Lua, no data in it)

Keys of `rotator_senders` are "acme.com" (exactly that From domain) or ".acme.com" (any
subdomain of acme.com, not acme.com itself); the most specific match wins: the exact domain,
then the nearest ".parent". Signatures are made in the listed order, the customer's first.

The sign_condition replaces the module's own selection, so: it signs mail from an
authenticated user (unless sign_authenticated = false) or from a local address (rspamd's
`local_addrs`, unless sign_local = false); `sign_networks`, `use_domain`, `use_esld`,
`domain {}` blocks and the header/envelope mismatch checks are not consulted. Mail with no or
several From addresses is not signed. check_pubkey, use_milter_headers, allowed_ids and
forbidden_ids still apply. Nothing outside rotator_senders is signed.

Keys: RSA as PKCS#8 PEM (`keys/<key_id>.pem`); Ed25519 in rspamd's own format, the base64 of
the 32-byte seed followed by the 32-byte public key, one line (`keys/<key_id>.ed25519`):
rspamd 3.4 cannot use an Ed25519 PKCS#8 PEM. rspamd checks no ownership; `_rspamd` must read
them (rotator writes 0640 files with the group _rspamd into its setgid 2750 directory).
"""

from __future__ import annotations

import base64
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ed25519

from ...domain.errors import SignerError
from ...ports import SigningEntry, sender_order, signing_row
from .base import (
    HEADER,
    SENDER_PATTERN,
    KeyReader,
    OnceEach,
    key_file,
    plain_name,
    sender_domain,
    unique_keys,
)

CONF = "dkim_signing.conf"

# DNS names as rotator validates them; anything else is refused rather than escaped, since a
# value lands in UCL (where "$VAR" expands) and rspamd's key path template ("$domain").
_PATH = re.compile(r"/[A-Za-z0-9._/+@%=,:~-]+")

SIGN_CONDITION = """\
return function(task)
  -- Built once per worker from this include; a reload (SIGHUP) starts new workers.
  local rt = rawget(_G, 'rotator_dkim_signing')
  if not rt then
    local opts = rspamd_config:get_all_opt('dkim_signing') or {}
    rt = {
      senders = opts.rotator_senders or {},
      sign_authenticated = opts.sign_authenticated ~= false,
      sign_local = opts.sign_local ~= false,
    }
    rawset(_G, 'rotator_dkim_signing', rt)
  end
  local ip = task:get_from_ip()
  local authed = rt.sign_authenticated and task:get_user() ~= nil
  local is_local = rt.sign_local and ip and ip:is_valid() and ip:is_local()
  if not (authed or is_local) then
    return false
  end
  if task:has_pre_result() then
    local action = task:get_metric_action()
    if action == 'reject' or action == 'soft reject' or action == 'drop' then
      return false
    end
  end
  local from = task:get_from('mime')
  if not from or not from[1] or from[2] or not from[1].domain then
    return false
  end
  local dom = string.lower(from[1].domain)
  local sigs = rt.senders[dom]
  local dot = string.find(dom, '.', 1, true)
  while not sigs and dot do
    sigs = rt.senders[string.sub(dom, dot)]
    dot = string.find(dom, '.', dot + 1, true)
  end
  if not sigs or not sigs[1] then
    return false
  end
  local out = {}
  for _, s in ipairs(sigs) do
    out[#out + 1] = { domain = s.domain, selector = s.selector, key = s.path }
  end
  return out
end
"""


def _sender(pattern: str) -> str:
    """The rotator_senders key of a signing pattern: "acme.com" or ".acme.com"."""
    if not SENDER_PATTERN.fullmatch(pattern.lower()):
        raise SignerError(f"rspamd: refusing signing pattern {pattern!r}: not *@domain")
    return sender_domain(pattern.lower())


def _path(value: str) -> str:
    if not _PATH.fullmatch(value) or "/../" in value + "/":
        raise SignerError(f"rspamd: refusing key path {value!r}: unsafe characters")
    return value


def rspamd_key(entry: SigningEntry, pem: bytes) -> bytes:
    """The key file rspamd 3.4 can sign with: PEM for RSA, base64(seed || public) for Ed25519."""
    if entry.algorithm == "rsa":
        return pem
    if entry.algorithm != "ed25519":
        raise SignerError(f"rspamd: key {entry.key_id}: unknown algorithm {entry.algorithm!r}")
    try:
        key = ser.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SignerError(f"rspamd: key {entry.key_id} cannot be read: {exc}") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SignerError(f"rspamd: key {entry.key_id} is not an Ed25519 key")
    seed = key.private_bytes(ser.Encoding.Raw, ser.PrivateFormat.Raw, ser.NoEncryption())
    public = key.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    return base64.b64encode(seed + public) + b"\n"


def _suffix(algorithm: str) -> str:
    return ".ed25519" if algorithm == "ed25519" else ".pem"


def key_name(entry: SigningEntry) -> str:
    return key_file(entry, _suffix(entry.algorithm))


def write_conf(rows: Iterable[tuple[Any, ...]], key_dir: str, out: Callable[[str], object]) -> None:
    """The include, a line at a time, from SigningRow-shaped tuples in sender order (a
    million streamed from the store, or a few entries)."""
    for line in (
        f"# {HEADER}",
        "# Included from local.d/dkim_signing.conf; see rotator/adapters/signers/rspamd.py.",
        "rotator_senders {",
    ):
        out(line + "\n")
    once = OnceEach("rspamd")  # UCL would turn a repeated key into an array of arrays
    for pattern, group in itertools.groupby(rows, key=lambda r: r[6]):
        sender = _sender(pattern)
        once.pattern(pattern)
        out(f'  "{sender}" = [\n')
        for key_id, domain, selector, algorithm, _, _, _, second in group:
            d, s = (
                plain_name("rspamd", domain, "domain"),
                plain_name("rspamd", selector, "selector"),
            )
            path = _path(f"{key_dir}/{key_id}{_suffix(algorithm)}")
            role = "esp" if second else "customer"
            out(f'    {{ domain = "{d}"; selector = "{s}"; path = "{path}"; }}, # {role}\n')
        out("  ];\n")
    for line in ("}", "sign_condition = <<EOD", SIGN_CONDITION.rstrip("\n"), "EOD;"):
        out(line + "\n")


def render_conf(entries: Sequence[SigningEntry], key_dir: str) -> str:
    lines: list[str] = []
    write_conf(sorted(map(signing_row, entries), key=sender_order), key_dir, lines.append)
    return "".join(lines)


class RspamdFormat:
    name = "rspamd"

    def key_name(self, entry: SigningEntry) -> str:
        return key_name(entry)

    def key_files(self, entries: Sequence[SigningEntry], read_key: KeyReader) -> dict[str, bytes]:
        return {key_name(e): rspamd_key(e, read_key(e)) for e in unique_keys(entries)}

    def tables(self, entries: Sequence[SigningEntry], key_dir: str) -> dict[str, bytes]:
        return {CONF: render_conf(entries, key_dir).encode()}

    table_names = (CONF,)

    def write_tables(
        self, rows: Iterator[tuple[Any, ...]], key_dir: str, out: Sequence[Callable[[str], object]]
    ) -> None:
        write_conf(rows, key_dir, out[0])
