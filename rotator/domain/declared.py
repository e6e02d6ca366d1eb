"""Settings declared as models: rotator.toml, its [[targets]] and policies/*.toml are each a
pydantic model whose fields carry their default and meaning (the README's reference tables
are printed from them) and whose validators refuse a bad value with the words an operator
reads. The first problem of a ValidationError becomes the one line the caller prints,
naming the file and the setting."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError
from pydantic_core import PydanticCustomError


class Settings(BaseModel):
    """A table of settings: a key it does not declare is refused (a misspelt setting would
    otherwise be ignored and its default used, unnoticed)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


def refuse(problem: str, key: str | None = None) -> PydanticCustomError:
    """`problem` says what is wrong and how to write it. `key` stands for the setting's own
    name where the text names another setting, or none ("")."""
    ctx: dict[str, str] = {"problem": problem}
    if key is not None:
        ctx["key"] = key
    return PydanticCustomError("refused", "{problem}", ctx)


def setting(default: Any, meaning: str, shown: str | None = None) -> Any:
    """A setting with a default; `shown` is how the reference tables write that default."""
    extra: dict[str, Any] = {"shown": shown} if shown is not None else {}
    return Field(default, description=meaning, json_schema_extra=extra)


def required(meaning: str, shown: str = "required") -> Any:
    """A setting without a default: its validator sees None when it is absent, and says
    what to write."""
    return Field(
        None, validate_default=True, description=meaning, json_schema_extra={"shown": shown}
    )


Problem = Callable[[Any], str]


def whole(ok: Callable[[int], bool], problem: Problem) -> PlainValidator:
    """An integer (true and false are no numbers) for which `ok` holds."""

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not ok(value):
            raise refuse(problem(value))
        return value

    return PlainValidator(check)


def real(ok: Callable[[float], bool], problem: Problem) -> PlainValidator:
    """A finite number, integer or not, for which `ok` holds."""

    def check(value: Any) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not ok(value)
        ):
            raise refuse(problem(value))
        return float(value)

    return PlainValidator(check)


def flag(problem: Problem) -> PlainValidator:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise refuse(problem(value))
        return value

    return PlainValidator(check)


def text(problem: Problem, ok: Callable[[str], bool] = lambda _: True) -> PlainValidator:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not ok(value):
            raise refuse(problem(value))
        return value

    return PlainValidator(check)


@dataclass(frozen=True)
class Refusal:
    """The first problem of a ValidationError, for the caller to name its file and key."""

    loc: tuple[str | int, ...]
    problem: str
    kind: str  # refused | unknown | table (not a table) | pydantic's own error type
    key: str | None = None  # replaces the name `loc` gives, when set
    value: Any = None


def first_refusal(exc: ValidationError, unknown_first: bool) -> Refusal:
    """The problem to report: an unknown key before any bad value (`unknown_first`, as the
    readers of rotator.toml check a table's keys first; the outer table's first, in the
    order of the alphabet), or after every bad value (policies)."""
    errors = sorted(exc.errors(), key=_unknown_first if unknown_first else _unknown_last)
    err = errors[0]
    ctx = err.get("ctx") or {}
    kind = {"extra_forbidden": "unknown", "model_type": "table", "dict_type": "table"}.get(
        err["type"], err["type"]
    )
    return Refusal(
        loc=tuple(err["loc"]),
        problem=str(ctx.get("problem", err["msg"])),
        kind=kind,
        key=ctx.get("key"),
        value=err.get("input"),
    )


def _unknown_last(err: Any) -> bool:
    return bool(err["type"] == "extra_forbidden")


def _unknown_first(err: Any) -> tuple[int, int, str]:
    if err["type"] == "extra_forbidden":
        return 0, len(err["loc"]), str(err["loc"])
    return 1, 0, ""
