"""Signer formats (OpenDKIM, rspamd, Exim, KumoMTA, rotator-signing/1 JSON) from one fixed set
of entries: golden files compared byte for byte, plus properties every format must keep.

Regenerate the golden files after an intended change:
    ROTATOR_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_signer_formats.py
and review the diff. Key files are recorded by size and sha256 only (keys.txt), so no key
material sits in the repository.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import json
import os
import random
import re
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ed25519

from rotator.adapters.signers import exim, jsonfile, kumomta, rspamd
from rotator.adapters.signers.base import Format, TargetFiles
from rotator.adapters.signers.base import render as render_files
from rotator.adapters.signers.opendkim import OpenDkimFormat
from rotator.domain.errors import SignerError
from rotator.ports import SigningEntry

GOLDEN = Path(__file__).parent / "golden" / "signers"
SCHEMA = Path(jsonfile.__file__).with_name("rotator-signing-1.schema.json")
KEY_DIR = "/var/lib/rotator/targets/{name}/keys"
NOWHERE = "/nonexistent"  # SigningEntry.key_path: formats read keys via read_key only


def entry(
    key_id: str, d: str, s: str, pattern: str, alg: str = "rsa", esp: bool = False
) -> SigningEntry:
    return SigningEntry(key_id, d, s, NOWHERE, pattern, alg, esp)


# RSA + Ed25519 own keys, a third-party d=, one ESP key signing for two senders, a subdomain
# pattern. Listed out of order on purpose: the output must not depend on it.
ENTRIES = [
    entry("esp-fbl-1", "fbl.esp.example", "fbl1", "*@beta.example", esp=True),
    entry("acme-sub-1", "acme.com", "sub1", "*@*.acme.com"),
    entry("acme-rsa-2026", "acme.com", "r2026", "*@acme.com"),
    entry("esp-fbl-1", "fbl.esp.example", "fbl1", "*@acme.com", esp=True),
    entry("acme-ed-2026", "acme.com", "e2026", "*@acme.com", "ed25519"),
    entry("beta-tp-1", "beta.esp-dkim.example", "t1", "*@beta.example"),
]
# What KumoMTA's helper can sign exactly: one own signature with d= the sender, and the same
# ESP signatures (RSA and Ed25519) on every sender.
KUMO_ENTRIES = [
    entry("acme-rsa-2026", "acme.com", "r2026", "*@acme.com"),
    entry("gamma-ed-1", "gamma.example", "g1", "*@gamma.example", "ed25519"),
    *[
        entry(k, "fbl.esp.example", s, p, a, esp=True)
        for p in ("*@acme.com", "*@gamma.example")
        for k, s, a in (("esp-fbl-1", "fbl1", "rsa"), ("esp-fbl-ed", "fble1", "ed25519"))
    ],
]


def ed_pem(key_id: str) -> bytes:
    seed = hashlib.sha256(key_id.encode()).digest()
    key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    return key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())


def read_key(e: SigningEntry) -> bytes:
    # Only rspamd parses keys (Ed25519 conversion); RSA bytes pass through untouched.
    return ed_pem(e.key_id) if e.algorithm == "ed25519" else f"rsa key {e.key_id}\n".encode()


FORMATS: dict[str, tuple[Format, list[SigningEntry]]] = {
    "opendkim": (OpenDkimFormat(), ENTRIES),
    "rspamd": (rspamd.RspamdFormat(), ENTRIES),
    "exim": (exim.EximFormat(), ENTRIES),
    "kumomta": (kumomta.KumoMtaFormat(), KUMO_ENTRIES),
    "json": (jsonfile.JsonFormat(), ENTRIES),
}


def render(name: str, entries: list[SigningEntry] | None = None) -> TargetFiles:
    fmt, default = FORMATS[name]
    return render_files(
        fmt, default if entries is None else entries, read_key, KEY_DIR.format(name=name)
    )


def golden_files(files: TargetFiles) -> dict[str, bytes]:
    manifest = "".join(
        f"{path} {len(data)} sha256:{hashlib.sha256(data).hexdigest()}\n"
        for path, data in sorted(files.keys.items())
    )
    return {**files.tables, "keys.txt": manifest.encode()}


def check_golden(name: str, files: dict[str, bytes]) -> None:
    folder = GOLDEN / name
    if os.environ.get("ROTATOR_UPDATE_GOLDEN") == "1":
        folder.mkdir(parents=True, exist_ok=True)
        for stale in set(p.name for p in folder.iterdir()) - set(files):
            (folder / stale).unlink()
        for file_name, data in files.items():
            (folder / file_name).write_bytes(data)
        return
    assert folder.is_dir(), f"no golden files for {name}: run with ROTATOR_UPDATE_GOLDEN=1"
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)
    for file_name, data in files.items():
        want = (folder / file_name).read_bytes()
        if data != want:
            diff = difflib.unified_diff(
                want.decode(errors="replace").splitlines(),
                data.decode(errors="replace").splitlines(),
                f"golden/{name}/{file_name}",
                "rendered",
                lineterm="",
            )
            pytest.fail("\n".join(diff) + "\n(ROTATOR_UPDATE_GOLDEN=1 if intended)")


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_golden(name: str) -> None:
    check_golden(name, golden_files(render(name)))


# ------------------------------------------------------------------ properties of every format


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_named_key_is_written_and_every_written_key_named(name: str) -> None:
    files = render(name)
    key_dir = KEY_DIR.format(name=name)
    named = {
        "keys/" + m
        for table in files.tables.values()
        for m in re.findall(re.escape(key_dir) + r"/([A-Za-z0-9._-]+)", table.decode())
    }
    assert named and named == set(files.keys)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_output_is_deterministic_and_order_independent(name: str) -> None:
    entries = list(FORMATS[name][1])
    first = golden_files(render(name, entries))
    random.Random(7).shuffle(entries)
    assert golden_files(render(name, entries)) == first
    assert golden_files(render(name, entries)) == first


BAD_VALUES = [
    ("domain", 'acme.com"; path = "/etc/shadow'),
    ("domain", "acme.com\nfoo"),
    ("domain", "acme.com}"),
    ("selector", "s1;x"),
    ("selector", "s1 : s2"),
    ("selector", "$dkim_domain"),
    ("selector", "s1\n"),
    ("signing_pattern", "acme.com"),
    ("signing_pattern", '*@acme.com" {'),
]


@pytest.mark.parametrize("name", ["rspamd", "exim", "kumomta", "json"])
@pytest.mark.parametrize(("field", "value"), BAD_VALUES)
def test_unsafe_values_are_refused(name: str, field: str, value: str) -> None:
    fields: dict[str, Any] = {field: value}
    bad = replace(KUMO_ENTRIES[0], **fields)
    with pytest.raises(SignerError, match="refusing"):
        render(name, [bad])


@pytest.mark.parametrize("name", ["rspamd", "exim", "kumomta"])
@pytest.mark.parametrize("key_dir", ['/srv/k"x', "/srv/k y", "/srv/$DBDIR", "relative/keys"])
def test_unsafe_key_dirs_are_refused(name: str, key_dir: str) -> None:
    fmt, entries = FORMATS[name]
    with pytest.raises(SignerError, match="refusing"):
        render_files(fmt, entries, read_key, key_dir)


def test_json_escapes_what_it_does_not_refuse() -> None:
    files = render_files(jsonfile.JsonFormat(), ENTRIES, read_key, '/srv/k"y\n')
    doc = json.loads(files.tables[jsonfile.DATA])
    assert doc["senders"][0]["signatures"][0]["key"].startswith('/srv/k"y\n/')
    with pytest.raises(SignerError, match="not an absolute path"):
        render_files(jsonfile.JsonFormat(), ENTRIES, read_key, "relative/keys")


def test_rspamd_refuses_a_key_that_is_not_ed25519() -> None:
    ed = ENTRIES[4]
    assert ed.algorithm == "ed25519"
    with pytest.raises(SignerError, match="cannot be read"):
        render_files(rspamd.RspamdFormat(), [ed], lambda e: b"not a key", "/k")


@pytest.mark.parametrize("name", ["rspamd", "exim", "kumomta", "json"])
def test_a_pattern_listed_twice_is_refused(name: str) -> None:
    first = FORMATS[name][1][0]
    twice = [*FORMATS[name][1], replace(first, signing_pattern=first.signing_pattern.upper())]
    with pytest.raises(SignerError, match="listed twice"):
        render(name, twice)


# ------------------------------------------------------------------ rspamd


def test_rspamd_ed25519_key_is_seed_and_public_key() -> None:
    files = render("rspamd")
    raw = base64.b64decode(files.keys["keys/acme-ed-2026.ed25519"])
    key = ser.load_pem_private_key(ed_pem("acme-ed-2026"), None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    public = key.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    assert len(raw) == 64 and raw[32:] == public
    assert files.keys["keys/acme-rsa-2026.pem"] == b"rsa key acme-rsa-2026\n"


def test_rspamd_sign_condition_is_fixed_code() -> None:
    # The Lua holds no data: every value sits in UCL strings the validators vetted.
    conf = render("rspamd").tables[rspamd.CONF].decode()
    lua = conf.split("sign_condition = <<EOD\n", 1)[1].split("\nEOD;\n", 1)[0]
    assert lua == rspamd.SIGN_CONDITION.rstrip("\n")
    assert lua.startswith("return function")  # what rspamd's callback_from_string requires


# ------------------------------------------------------------------ Exim


def test_exim_docstring_shows_the_tested_transport_lines() -> None:
    doc = " ".join((exim.__doc__ or "").split())
    for block in (exim.MAIN_OPTIONS, exim.TRANSPORT_OPTIONS):
        assert " ".join(block.split()) in doc


def test_exim_wildcard_apex_gets_its_own_line() -> None:
    entries = [
        entry("w", "wild.org", "w1", "*@*.wild.org"),
        entry("a", "acme.com", "a1", "*@*.acme.com"),
        entry("b", "b.acme.com", "b1", "*@*.b.acme.com"),
    ]
    text = exim.render_senders(entries, "/k")
    lines = dict(line.split(":", 1) for line in text.splitlines() if line[:1] not in "# ")
    assert lines["wild.org"] == ""  # "*@*.wild.org" does not sign wild.org itself
    assert lines["b.acme.com"] == lines["*.acme.com"]  # but *@*.acme.com covers b.acme.com


def test_exim_refuses_two_keys_for_one_selector() -> None:
    clash = [entry("k1", "acme.com", "s1", "*@acme.com"), entry("k2", "acme.com", "s1", "*@x.org")]
    with pytest.raises(SignerError, match=r"both claim s=s1 d=acme\.com"):
        exim.render_senders(clash, "/k")


# ------------------------------------------------------------------ KumoMTA


def helper_signatures(data: dict[str, Any], from_domain: str) -> list[tuple[str, str, str, str]]:
    """What policy-extras/dkim_sign.lua signs a message from `from_domain` with: the domain
    block (exact key, else kumo.domain_map's "*.parent" wildcard), then every
    base.additional_signatures block. (d, selector, algo, filename) each."""
    domains = data.get("domain", {})
    block = domains.get(from_domain)
    labels = from_domain.split(".")
    for i in range(1, len(labels)):
        block = block or domains.get("*." + ".".join(labels[i:]))
    out = []
    if block:
        out.append((from_domain, block["selector"], block.get("algo", "sha256"), block["filename"]))
    for name in data["base"].get("additional_signatures", []):
        sig = data["signature"][name]
        out.append((sig["domain"], sig["selector"], sig.get("algo", "sha256"), sig["filename"]))
    return out


def test_kumomta_data_is_what_the_helper_reads() -> None:
    files = render("kumomta")
    data = tomllib.loads(files.tables[kumomta.DATA].decode())
    assert set(data) == {"base", "domain", "signature"}
    assert data["base"]["headers"][0] == "From"
    for sig in data["signature"].values():
        assert sig["policy"] == "Always" and sig["domain"]  # domain is required there
    key_dir = KEY_DIR.format(name="kumomta")
    algo = {"rsa": "sha256", "ed25519": "ed25519"}
    for domain in ("acme.com", "gamma.example"):
        want = [
            (e.domain, e.selector, algo[e.algorithm], f"{key_dir}/{e.key_id}.pem")
            for e in KUMO_ENTRIES
            if e.signing_pattern == f"*@{domain}"
        ]
        assert sorted(helper_signatures(data, domain)) == sorted(want)
    # The helper's one deviation: additional signatures go on every message.
    assert [s[0] for s in helper_signatures(data, "other.org")] == ["fbl.esp.example"] * 2


def test_kumomta_refuses_what_the_helper_cannot_sign() -> None:
    with pytest.raises(SignerError) as caught:
        render("kumomta", ENTRIES)
    text = str(caught.value)
    assert "*@acme.com: 2 own signatures" in text
    assert "*@beta.example: d=beta.esp-dkim.example is not the sender domain" in text
    assert "*@*.acme.com: subdomain patterns" in text
    assert "ESP signatures differ between senders" in text
    assert kumomta.check(KUMO_ENTRIES) == []


# ------------------------------------------------------------------ JSON


def schema_errors(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """The subset of JSON Schema the rotator-signing/1 schema uses (no dependency)."""
    errors: list[str] = []
    types = {"object": dict, "array": list, "string": str, "boolean": bool}
    if "type" in schema and not isinstance(value, types[schema["type"]]):
        return [f"{where}: not a {schema['type']}"]
    if "const" in schema and value != schema["const"]:
        errors.append(f"{where}: not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} not in {schema['enum']}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: {value!r} does not match {schema['pattern']}")
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{where}: too short")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{where}: too few items")
        for i, item in enumerate(value):
            errors += schema_errors(item, schema.get("items", {}), f"{where}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        errors += [f"{where}: {k} missing" for k in schema.get("required", []) if k not in value]
        if schema.get("additionalProperties") is False:
            errors += [f"{where}: unexpected {k}" for k in value if k not in props]
        for k, v in value.items():
            if k in props:
                errors += schema_errors(v, props[k], f"{where}.{k}")
    return errors


def test_json_validates_against_its_schema() -> None:
    schema = json.loads(SCHEMA.read_text())
    doc = json.loads(render("json").tables[jsonfile.DATA])
    assert schema_errors(doc, schema) == []
    assert schema["properties"]["schema"]["const"] == jsonfile.SCHEMA == doc["schema"]
    # The checker does catch what the schema forbids.
    doc["senders"][0]["signatures"][0]["algorithm"] = "rsa-sha1"
    doc["senders"][0]["extra"] = 1
    assert len(schema_errors(doc, schema)) == 2


def test_json_senders_and_roles() -> None:
    doc = json.loads(render("json").tables[jsonfile.DATA])
    by_pattern = {s["pattern"]: s for s in doc["senders"]}
    acme = by_pattern["*@acme.com"]
    assert (acme["domain"], acme["subdomains"]) == ("acme.com", False)
    assert [(s["s"], s["algorithm"], s["role"]) for s in acme["signatures"]] == [
        ("e2026", "ed25519-sha256", "customer"),
        ("r2026", "rsa-sha256", "customer"),
        ("fbl1", "rsa-sha256", "esp"),
    ]
    sub = by_pattern["*@*.acme.com"]
    assert (sub["domain"], sub["subdomains"]) == ("acme.com", True)
    assert by_pattern["*@beta.example"]["signatures"][0]["d"] == "beta.esp-dkim.example"
