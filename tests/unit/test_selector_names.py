"""Selector templates and collisions (RFC 6376 3.1), and domain name input (IDNA, lengths)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rotator.domain.errors import InputError
from rotator.domain.names import normalize_domain
from rotator.domain.selector import check_template, choose, render, validate_selector

WHEN = datetime(2026, 11, 24, 9, 5, 7, tzinfo=UTC)
TEMPLATE = "{mon}{yyyy}.{esp}"


# --- render ---------------------------------------------------------------------------------


def test_render_default_template() -> None:
    assert render(TEMPLATE, WHEN, "myesp") == "nov2026.myesp"


def test_render_every_field() -> None:
    assert render("s{hh}{mi}{ss}.{esp}", WHEN, "myesp") == "s090507.myesp"
    assert render("{yy}{mm}{dd}", WHEN, "x") == "261124"
    assert render("k{unix}", WHEN, "x") == f"k{int(WHEN.timestamp())}"
    assert render("{mon}", datetime(2027, 1, 1, tzinfo=UTC), "x") == "jan"


def test_render_lowercases() -> None:
    assert render(TEMPLATE, WHEN, "MyESP") == "nov2026.myesp"


def test_render_invalid_result_raises() -> None:
    with pytest.raises(InputError, match="label 'my_esp'"):
        render(TEMPLATE, WHEN, "my_esp")


def test_check_template() -> None:
    check_template(TEMPLATE)
    check_template("static-selector")
    with pytest.raises(ValueError, match=r"unknown field \{month\}"):
        check_template("{month}{yyyy}")
    with pytest.raises(ValueError, match=r"\{mon\}"):
        check_template("{mon:>5}")


# --- choose ---------------------------------------------------------------------------------


def test_choose_without_collision() -> None:
    assert choose(TEMPLATE, WHEN, "myesp", set(), "suffix") == "nov2026.myesp"
    assert choose(TEMPLATE, WHEN, "myesp", {"oct2026.myesp"}, "fail") == "nov2026.myesp"


def test_choose_suffix_b_then_c() -> None:
    taken = {"nov2026.myesp"}
    assert choose(TEMPLATE, WHEN, "myesp", taken, "suffix") == "nov2026b.myesp"
    taken.add("nov2026b.myesp")
    assert choose(TEMPLATE, WHEN, "myesp", taken, "suffix") == "nov2026c.myesp"
    taken.add("nov2026c.myesp")
    assert choose(TEMPLATE, WHEN, "myesp", taken, "suffix") == "nov2026d.myesp"


def test_choose_suffix_single_label() -> None:
    assert choose("{mon}{yyyy}", WHEN, "x", {"nov2026"}, "suffix") == "nov2026b"


def test_choose_all_suffixes_taken() -> None:
    taken = {"nov2026.myesp"} | {f"nov2026{c}.myesp" for c in "bcdefghijklmnopqrstuvwxyz"}
    with pytest.raises(InputError, match="all suffixes b-z are taken") as info:
        choose(TEMPLATE, WHEN, "myesp", taken, "suffix")
    assert "\n" not in str(info.value)


def test_choose_collision_fail() -> None:
    with pytest.raises(InputError) as info:
        choose(TEMPLATE, WHEN, "myesp", {"nov2026.myesp"}, "fail")
    msg = str(info.value)
    assert "'nov2026.myesp' is already used" in msg
    assert "\n" not in msg


# --- validate_selector ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "ok", ["a", "nov2026.myesp", "s-1.x", "a" * 63, ".".join(["a" * 49] * 4), "0"]
)
def test_validate_selector_ok(ok: str) -> None:
    assert validate_selector(ok) == ok


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("", "1-200 characters"),
        (".".join(["a" * 50] * 4) + ".b", "1-200 characters"),  # 203 characters
        ("a" * 64, "must be 1-63"),
        ("-nov", "label '-nov'"),
        ("nov-", "label 'nov-'"),
        ("nov..myesp", "label ''"),
        (".nov", "label ''"),
        ("nov.", "label ''"),
        ("nov_2026", "label 'nov_2026'"),
        ("nov 2026", "label 'nov 2026'"),
        ("Nov2026", "label 'Nov2026'"),
        ("n\u00f6v", "label 'n\u00f6v'"),
    ],
)
def test_validate_selector_rejects(bad: str, problem: str) -> None:
    with pytest.raises(InputError) as info:
        validate_selector(bad)
    msg = str(info.value)
    assert problem in msg
    assert msg.startswith("selector ")
    assert "\n" not in msg


# --- normalize_domain -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("example.com", "example.com"),
        ("EXAMPLE.Com", "example.com"),
        ("example.com.", "example.com"),
        ("  Example.COM.  ", "example.com"),
        ("b\u00fccher.example", "xn--bcher-kva.example"),
        ("B\u00dcCHER.example.", "xn--bcher-kva.example"),
        ("mail.\u4f8b\u3048.jp", "mail.xn--r8jz45g.jp"),
        ("_domainkey.example.com", "_domainkey.example.com"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("a" * 63 + ".com", "a" * 63 + ".com"),
    ],
)
def test_normalize_domain(raw: str, normal: str) -> None:
    assert normalize_domain(raw) == normal


def test_normalize_domain_at_253_octets() -> None:
    name = ".".join(["a" * 63] * 3 + ["b" * 61])  # 253 octets
    assert len(name) == 253
    assert normalize_domain(name) == name
    assert normalize_domain(name + ".") == name


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (".", "empty"),
        ("a..example.com", "empty label"),
        (".example.com", "empty label"),
        ("a" * 64 + ".com", "longer than 63 octets"),
        (".".join(["a" * 63] * 3 + ["b" * 62]), "longer than 253 octets"),
        ("localhost", "fully qualified"),
        ("com.", "fully qualified"),
        ("exa mple.com", "label 'exa mple'"),
        ("ex@mple.com", "label 'ex@mple'"),
        ("-example.com", "label '-example'"),
        ("example-.com", "label 'example-'"),
        ("exa\nmple.com", "may only hold"),
        ("\u00fc" * 70 + ".com", "not valid IDNA"),
    ],
)
def test_normalize_domain_rejects(raw: str, problem: str) -> None:
    with pytest.raises(InputError) as info:
        normalize_domain(raw)
    msg = str(info.value)
    assert problem in msg
    assert "\n" not in msg
    if raw.strip(" ."):
        assert msg.startswith(f"domain {raw!r}")


@pytest.mark.parametrize(
    "pattern",
    [
        "*@example.com",
        "*@*.example.com",
        "*@a.b",
        "*@-a.com",
        "*@a-.com",
        "*@a_b.example",
        "*@Example.com",
        "*@example",
        "*@*.*.example.com",
        "*@example..com",
        "*@" + "a" * 63 + ".com",
        "*@" + "a" * 64 + ".com",
        "*@" + ".".join(["a" * 61] * 4) + ".com",
        "*@*." + ".".join(["a" * 61] * 4) + ".co",
        "*@" + ".".join(["a" * 62] * 4),
        "*@" + ".".join(["a" * 63] * 4),
        "*@*." + ".".join(["a" * 63] * 4),
        "*@xn--bcher-kva.example",
        "x@example.com",
        "*@exa mple.com",
    ],
)
def test_the_fast_pattern_check_agrees_with_the_full_one(pattern: str) -> None:
    from rotator.domain.names import _pattern_problem, pattern_problem

    assert (pattern_problem(pattern) is None) == (_pattern_problem(pattern) is None)
