"""DKIM key records (RFC 6376 3.6.1, RFC 8463): building, splitting into character-strings,
parsing, revocation and comparison."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from rotator.domain.errors import RecordError
from rotator.domain.record import (
    MAX_STRING,
    RecordTags,
    build_record,
    is_revoked,
    join_strings,
    parse_record,
    records_match,
    revoked_record,
    split_strings,
)


@pytest.fixture(scope="module")
def rsa4096_b64() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode("ascii")


@pytest.fixture(scope="module")
def ed25519_b64() -> str:
    raw = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    return base64.b64encode(raw).decode("ascii")


def tag_names(text: str) -> list[str]:
    return [spec.split("=", 1)[0].strip() for spec in text.split(";")]


# --- build_record --------------------------------------------------------------------------


def test_build_rsa_minimal(rsa4096_b64: str) -> None:
    text = build_record("rsa", rsa4096_b64)
    assert text == f"v=DKIM1; k=rsa; p={rsa4096_b64}"
    assert parse_record(text) == {"v": "DKIM1", "k": "rsa", "p": rsa4096_b64}


def test_build_ed25519_minimal(ed25519_b64: str) -> None:
    text = build_record("ed25519", ed25519_b64)
    assert text == f"v=DKIM1; k=ed25519; p={ed25519_b64}"
    assert len(base64.b64decode(parse_record(text)["p"])) == 32


def test_build_with_all_tags_v_first_p_last(rsa4096_b64: str) -> None:
    tags = RecordTags(flags=("y", "s"), hashes=("sha256", "sha1"), service="email", notes="ESP key")
    text = build_record("rsa", rsa4096_b64, tags)
    names = tag_names(text)
    assert names[0] == "v"
    assert names[-1] == "p"
    assert sorted(names) == ["h", "k", "n", "p", "s", "t", "v"]
    parsed = parse_record(text)
    assert parsed["h"] == "sha256:sha1"
    assert parsed["s"] == "email"
    assert parsed["t"] == "y:s"
    assert parsed["p"] == rsa4096_b64


def test_build_ed25519_with_tags(ed25519_b64: str) -> None:
    text = build_record("ed25519", ed25519_b64, RecordTags(hashes=("sha256",), flags=("s",)))
    assert text == f"v=DKIM1; k=ed25519; h=sha256; t=s; p={ed25519_b64}"


def test_notes_are_dkim_quoted_printable(ed25519_b64: str) -> None:
    text = build_record("ed25519", ed25519_b64, RecordTags(notes="a=b; c d\tcaf\u00e9"))
    n = parse_record(text)["n"]
    assert n == "a=3Db=3B=20c=20d=09caf=C3=A9"
    # nothing that could end the tag or the value survives unencoded
    assert ";" not in n and " " not in n and n.isascii()


def test_build_unknown_algorithm_raises() -> None:
    with pytest.raises(RecordError, match="dsa"):
        build_record("dsa", "AAAA")


# --- split_strings / join_strings -----------------------------------------------------------


def test_split_rsa4096_into_255_octet_strings(rsa4096_b64: str) -> None:
    text = build_record("rsa", rsa4096_b64, RecordTags(notes="rotated by rotator"))
    chunks = split_strings(text)
    assert len(chunks) >= 3  # a 4096-bit SPKI is ~736 base64 chars
    assert all(isinstance(c, bytes) for c in chunks)
    assert all(0 < len(c) <= MAX_STRING == 255 for c in chunks)
    assert all(len(c) == 255 for c in chunks[:-1])  # no needlessly short strings
    assert b"".join(chunks) == text.encode("ascii")
    assert join_strings(chunks) == text
    assert parse_record(join_strings(chunks))["p"] == rsa4096_b64


def test_split_short_and_empty() -> None:
    assert split_strings("v=DKIM1; p=") == [b"v=DKIM1; p="]
    assert split_strings("") == [b""]
    exact = "x" * 255
    assert split_strings(exact) == [exact.encode()]
    assert split_strings(exact + "y") == [exact.encode(), b"y"]


def test_join_non_ascii_raises() -> None:
    with pytest.raises(RecordError, match="ASCII"):
        join_strings([b"v=DKIM1; p=\xff"])


# --- parse_record ---------------------------------------------------------------------------


def test_parse_ignores_folding_whitespace_in_p(rsa4096_b64: str) -> None:
    folded = " \r\n\t".join(rsa4096_b64[i : i + 60] for i in range(0, len(rsa4096_b64), 60))
    tags = parse_record(f"v=DKIM1; k=rsa; p= {folded} ")
    assert tags["p"] == rsa4096_b64


def test_parse_trailing_semicolon_ok() -> None:
    assert parse_record("v=DKIM1; k=rsa; p=QUJD;") == {"v": "DKIM1", "k": "rsa", "p": "QUJD"}
    assert parse_record("v=DKIM1; p=QUJD ;  ") == {"v": "DKIM1", "p": "QUJD"}


def test_parse_without_v_is_allowed() -> None:
    assert parse_record("k=rsa; p=QUJD") == {"k": "rsa", "p": "QUJD"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("v=DKIM1; k=rsa; k=ed25519; p=QUJD", "duplicate tag k="),
        ("v=DKIM1; p=QUJD; p=QUJD", "duplicate tag p="),
        ("k=rsa; v=DKIM1; p=QUJD", "v= must be the first tag"),
        ("v=DKIM2; k=rsa; p=QUJD", "v=DKIM2 is not DKIM1"),
        ("v=DKIM1; k=rsa", "p= tag is missing"),
        ("v=DKIM1; k=rsa; p=QU$JD", "p= is not base64"),
        ("v=DKIM1; k=rsa; p=QU=JD", "p= is not base64"),
        ("v=DKIM1; k=rsa; p=QUJD===", "p= is not base64"),
        ("v=DKIM1; k rsa; p=QUJD", "has no '='"),
        ("v=DKIM1; 1k=rsa; p=QUJD", "invalid tag name"),
        ("", "p= tag is missing"),
    ],
)
def test_parse_errors(text: str, problem: str) -> None:
    with pytest.raises(RecordError) as info:
        parse_record(text)
    assert problem in str(info.value)
    assert "\n" not in str(info.value)


# --- revocation and comparison --------------------------------------------------------------


def test_revoked_record_parses_with_empty_p() -> None:
    tags = parse_record(revoked_record())
    assert tags == {"v": "DKIM1", "p": ""}
    assert is_revoked(tags)


def test_live_record_is_not_revoked(ed25519_b64: str) -> None:
    assert not is_revoked(parse_record(build_record("ed25519", ed25519_b64)))
    assert not is_revoked({"v": "DKIM1"})  # no p= at all is not a revocation


def test_records_match_ignores_order_and_whitespace(rsa4096_b64: str) -> None:
    expected = build_record("rsa", rsa4096_b64, RecordTags(hashes=("sha256",), service="email"))
    half = len(rsa4096_b64) // 2
    observed = f"v=DKIM1;s=email ;  h=sha256;k=rsa;p={rsa4096_b64[:half]} \t {rsa4096_b64[half:]};"
    assert records_match(expected, observed)
    assert records_match(observed, expected)


def test_records_match_differs_on_p(rsa4096_b64: str, ed25519_b64: str) -> None:
    a = build_record("rsa", rsa4096_b64)
    flipped = "B" if rsa4096_b64[100] != "B" else "C"
    other = rsa4096_b64[:100] + flipped + rsa4096_b64[101:]  # one base64 digit differs
    assert not records_match(a, build_record("rsa", other))
    assert not records_match(a, revoked_record())
    assert not records_match(build_record("ed25519", ed25519_b64), a)


def test_records_match_differs_on_other_tags(ed25519_b64: str) -> None:
    a = build_record("ed25519", ed25519_b64)
    assert not records_match(a, build_record("ed25519", ed25519_b64, RecordTags(flags=("y",))))


def test_records_match_is_false_for_unparseable(ed25519_b64: str) -> None:
    a = build_record("ed25519", ed25519_b64)
    assert not records_match(a, "not a dkim record")
    assert not records_match(a, a.replace("v=DKIM1", "v=DKIM2"))


def test_the_same_text_matches_only_if_it_is_a_record(rsa4096_b64: str) -> None:
    record = f"v=DKIM1; k=rsa; p={rsa4096_b64}"
    assert records_match(record, record)
    for bad in ("v=DKIM1; k=rsa", "v=DKIM2; p=abc", "not a record", ""):
        assert not records_match(bad, bad)
