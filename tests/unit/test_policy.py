"""Policies: the shipped files, the arithmetic (drain window, schedule, backoff), durations,
and validation errors that name the file and the [section].key on one line."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rotator.config.cron import cron_schedule
from rotator.config.policies import PolicySet, load_policy_file
from rotator.domain.errors import NotFound, PolicyError
from rotator.domain.policy import IntervalSchedule, Policy, parse_duration, parse_policy

ROOT = Path(__file__).resolve().parents[2]
SOURCE = "policies/test.toml"


@pytest.fixture(scope="module")
def shipped() -> PolicySet:
    return PolicySet(ROOT / "policies")


def parse(data: dict[str, Any]) -> Policy:
    return parse_policy("test", data, SOURCE, cron_schedule)


VALID: dict[str, Any] = {
    "key": {"algorithm": "rsa", "bits": 2048},
    "rotation": {"interval": "30d"},
    "drain": {"max_queue_time": "5d", "multiplier": 3},
    "dns": {"ttl": 3600},
    "selector": {"template": "{mon}{yyyy}.{esp}", "esp": "myesp", "collision": "suffix"},
    "record": {"flags": [], "hashes": [], "service": "", "notes": ""},
    "verify": {"timeout": "1h"},
    "retry": {"base": "30s", "max": "1h"},
    "tombstone": {"retention": "30d"},
}


def with_(section: str, **values: Any) -> dict[str, Any]:
    data = copy.deepcopy(VALID)
    data.setdefault(section, {}).update(values)
    return data


# --- shipped policies ----------------------------------------------------------------------


def test_shipped_policies_load(shipped: PolicySet) -> None:
    assert shipped.names() == ["default", "demo", "demo-dual", "demo-ed25519", "demo-standby"]
    assert shipped.get("demo-dual").companion == "demo-ed25519"
    assert shipped.get("default").source == str(ROOT / "policies" / "default.toml")


def test_default_policy(shipped: PolicySet) -> None:
    p = shipped.get("default")
    assert (p.algorithm, p.bits) == ("rsa", 2048)
    assert p.max_queue_time == timedelta(days=5)
    assert p.drain_multiplier == 3
    assert p.drain_window == timedelta(days=15)
    assert "0 3 1 * *" in p.schedule.describe()
    after = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    assert p.schedule.next_rotation(after) == datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    assert p.rotate_at(after) == datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    # the month after, and never "now" when activated exactly at a fire time
    fire = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    assert p.rotate_at(fire) == datetime(2027, 1, 1, 3, 0, tzinfo=UTC)
    assert p.drain_until(after) == after + timedelta(days=15)
    assert p.tombstone_until(after) == after + timedelta(days=30)
    assert p.selector_template == "{mon}{yyyy}.{esp}"
    assert p.collision == "suffix"
    assert p.schedule.min_interval() == timedelta(days=28)


def test_demo_policy(shipped: PolicySet) -> None:
    p = shipped.get("demo")
    assert p.drain_window == timedelta(seconds=9)
    assert isinstance(p.schedule, IntervalSchedule)
    t = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    assert p.rotate_at(t) == t + timedelta(seconds=20)
    assert p.ttl == 2
    assert p.retry_base == timedelta(seconds=0.5)


def test_demo_backoff_doubles_and_caps(shipped: PolicySet) -> None:
    p = shipped.get("demo")  # base 0.5s, max 4s
    got = [p.backoff(n).total_seconds() for n in range(1, 8)]
    assert got == [0.5, 1, 2, 4, 4, 4, 4]
    assert p.backoff(10_000) == timedelta(seconds=4)


def test_default_backoff_doubles_and_caps(shipped: PolicySet) -> None:
    p = shipped.get("default")  # base 30s, max 1h
    got = [p.backoff(n).total_seconds() for n in range(1, 10)]
    assert got == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert p.backoff(10_000) == timedelta(hours=1)


def test_backoff_caps_for_any_attempt_with_large_base() -> None:
    p = parse(with_("retry", base="1d", max="2d"))
    assert p.backoff(31) == timedelta(days=2)


def test_policy_set_unknown_name(shipped: PolicySet) -> None:
    with pytest.raises(NotFound, match=r"policy 'nope' not found.*known: default, demo"):
        shipped.get("nope")


def test_policy_set_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="policy directory not found"):
        PolicySet(tmp_path / "absent")


def test_policy_set_stops_on_a_bad_file(tmp_path: Path) -> None:
    (tmp_path / "good.toml").write_text('[key]\nalgorithm = "ed25519"\n')
    (tmp_path / "bad.toml").write_text("[drain]\nmultiplier = 0\n")
    with pytest.raises(PolicyError, match=r"bad\.toml: \[drain\]\.multiplier"):
        PolicySet(tmp_path)


def test_defaults_apply_to_an_empty_policy() -> None:
    p = parse({})
    assert (p.algorithm, p.bits) == ("rsa", 2048)
    assert p.drain_window == timedelta(days=15)
    assert p.schedule.next_rotation(datetime(2026, 1, 1, tzinfo=UTC)) == datetime(
        2026, 1, 31, tzinfo=UTC
    )
    assert parse({"key": {"algorithm": "ed25519"}}).bits == 256


# --- parse_duration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("0.5s", 0.5),
        ("5m", 300),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("5d", 5 * 86400),
        ("2w", 14 * 86400),
        ("1w2d3h4m5s", 7 * 86400 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5),
        (90, 90),
        (1.5, 1.5),
        (0, 0),
    ],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "bad", ["", "  ", "5", "5x", "d5", "5 days", "1m30", "5s5m", "-5d", "1.5m", -1, True, None]
)
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(bad)
    assert "\n" not in str(info.value)


# --- validation errors ----------------------------------------------------------------------


def test_valid_base_parses() -> None:
    parse(VALID)  # the cases below each break exactly one thing


@pytest.mark.parametrize(
    ("section", "values", "where", "detail"),
    [
        ("key", {"algorithm": "dsa"}, "[key].algorithm", "'dsa'"),
        ("key", {"bits": 512}, "[key].bits", "512"),
        ("key", {"bits": True}, "[key].bits", "True"),
        ("key", {"algorithm": "ed25519", "bits": 2048}, "[key].bits", "ed25519"),
        ("drain", {"multiplier": 0.5}, "[drain].multiplier", "0.5"),
        ("drain", {"multiplier": "3"}, "[drain].multiplier", "from 1 to 100"),
        ("drain", {"max_queue_time": "-5d"}, "[drain].max_queue_time", "'-5d'"),
        ("drain", {"max_queue_time": -5}, "[drain].max_queue_time", "between 0 and"),
        ("drain", {"max_queue_time": "soon"}, "[drain].max_queue_time", "'soon'"),
        ("verify", {"timeout": "0s"}, "[verify].timeout", "at least"),
        ("tombstone", {"retention": "forever"}, "[tombstone].retention", "'forever'"),
        ("rotation", {"interval": "0s"}, "[rotation].interval", "at least"),
        ("rotation", {"cron": "0 3 1 * *"}, "[rotation].cron", "not both"),
        ("dns", {"ttl": -1}, "[dns].ttl", "-1"),
        ("dns", {"ttl": "1h"}, "[dns].ttl", "'1h'"),
        ("drain", {"multiplyer": 3}, "[drain].multiplyer", "unknown setting"),
        ("selector", {"template": "{month}{yyyy}.{esp}"}, "[selector].template", "{month}"),
        ("selector", {"template": "{mon"}, "[selector].template", "'}'"),
        ("selector", {"template": "{mon!r}.{esp}"}, "[selector].template", "{mon}"),
        ("selector", {"esp": "My ESP"}, "[selector].esp", "'My ESP'"),
        ("selector", {"collision": "rename"}, "[selector].collision", "'rename'"),
        ("record", {"flags": ["x"]}, "[record].flags", "'x'"),
        ("record", {"flags": "y"}, "[record].flags", "'y'"),
        ("record", {"hashes": ["md5"]}, "[record].hashes", "'md5'"),
        ("record", {"service": "web"}, "[record].service", "'web'"),
        ("record", {"notes": 5}, "[record].notes", "string"),
        ("retry", {"base": "1h", "max": "30s"}, "[retry].max", "[retry].base"),
        ("retry", {"base": "0s"}, "[retry].base", "at least"),
    ],
)
def test_validation_error_names_file_and_key(
    section: str, values: dict[str, Any], where: str, detail: str
) -> None:
    with pytest.raises(PolicyError) as info:
        parse(with_(section, **values))
    msg = str(info.value)
    assert msg.startswith(f"{SOURCE}: {where}: "), msg
    assert detail in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    ("cron", "detail"),
    [
        ("61 3 1 * *", "61"),
        ("0 3 32 * *", "32"),
        ("0 3 1 *", "5 fields"),
        ("a b c d e", '"d"'),
        ("0 3 1 * * *", "5 fields"),
    ],
)
def test_bad_cron_expression(cron: str, detail: str) -> None:
    data = copy.deepcopy(VALID)
    data["rotation"] = {"cron": cron}
    with pytest.raises(PolicyError) as info:
        parse(data)
    msg = str(info.value)
    assert msg.startswith(f"{SOURCE}: [rotation].cron: {cron!r}: "), msg
    assert detail in msg.split(": ", 3)[3]
    assert "\n" not in msg


def test_cron_not_a_string() -> None:
    data = copy.deepcopy(VALID)
    data["rotation"] = {"cron": 5}
    with pytest.raises(PolicyError, match=r"^policies/test\.toml: \[rotation\]\.cron: "):
        parse(data)


def test_unknown_section_key_and_non_table_section() -> None:
    data = copy.deepcopy(VALID)
    data["keys"] = {"algorithm": "rsa"}
    with pytest.raises(PolicyError, match=r"^policies/test\.toml: \[keys\]\.algorithm: unknown"):
        parse(data)
    data = copy.deepcopy(VALID)
    data["drain"] = "5d"
    with pytest.raises(PolicyError, match=r"^policies/test\.toml: \[drain\]: must be a table"):
        parse(data)


@pytest.mark.parametrize("value", ["9999999999d", float("inf")])
def test_out_of_range_duration_is_a_policy_error(value: object) -> None:
    with pytest.raises(PolicyError, match=r"\[drain\]\.max_queue_time"):
        parse(with_("drain", max_queue_time=value))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_multiplier_is_rejected(value: float) -> None:
    with pytest.raises(PolicyError, match=r"\[drain\]\.multiplier"):
        parse(with_("drain", multiplier=value))


# --- files ----------------------------------------------------------------------------------


def test_toml_syntax_error_names_file_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('[key]\nalgorithm = "rsa"\nbits = \n')
    with pytest.raises(PolicyError) as info:
        load_policy_file(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: invalid TOML: ")
    assert "line 3" in msg
    assert "\n" not in msg


def test_file_error_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "weak.toml"
    path.write_text("[key]\nalgorithm = 'rsa'\nbits = 512\n")
    with pytest.raises(PolicyError) as info:
        load_policy_file(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: [key].bits: ")
    assert "\n" not in msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no such policy file"):
        load_policy_file(tmp_path / "absent.toml")


def test_loaded_file_is_named_after_its_stem(tmp_path: Path) -> None:
    path = tmp_path / "fast.toml"
    path.write_text('[key]\nalgorithm = "ed25519"\n[rotation]\ninterval = "1h30m"\n')
    p = load_policy_file(path)
    assert p.name == "fast"
    assert p.algorithm == "ed25519"
    assert p.schedule.min_interval() == timedelta(minutes=90)
