"""Typed, validated values as params.yaml means them, for pydantic dataclasses: strict
YAML types (no strings read as numbers, no bools as numbers; ints accepted for floats),
bounds, and one-line rules whose messages name the value."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, Strict
from pydantic.dataclasses import dataclass

from initbench.core.errors import ParamsError


def fail(key: str, message: str) -> typing.NoReturn:
    """Raise :class:`ParamsError` ``"<key> <message>"``: a rule across keys names its key."""
    raise ParamsError(f"{key} {message}")


def rule(ok: Callable[[Any], bool], message: str) -> AfterValidator:
    """A check of the converted value: ``ValueError(message.format(value))`` unless ``ok``."""

    def check(value: Any) -> Any:
        if not ok(value):
            raise ValueError(message.format(value))
        return value

    return AfterValidator(check)


#: A section: a frozen standard dataclass that pydantic validates on construction.
section = dataclass(frozen=True, config=ConfigDict(extra="forbid"))

Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]
# Int bounds are Field()s; float rules check the float the input became (0 -> "got 0.0").
Count = Annotated[Int, Field(ge=1)]
NonNegative = Annotated[Int, Field(ge=0)]
Positive = Annotated[Float, rule(lambda v: v > 0, "must be > 0, got {!r}")]
Fraction = Annotated[Float, rule(lambda v: 0 < v < 1, "must be in (0, 1), got {!r}")]
LabelFraction = Annotated[Float, rule(lambda v: 0 < v <= 1, "must be in (0, 1], got {!r}")]


#: pydantic's error types for a key that is not there (a typo): reported first.
UNKNOWN_KEY = ("unexpected_keyword_argument", "invalid_key")
#: the rest of the message after the key, by pydantic error type
_WORDING = {
    "missing": "is missing",
    "int_type": "must be an integer, got {input!r}",
    "float_type": "must be a number, got {input!r}",
    "bool_type": "must be true or false, got {input!r}",
    "string_type": "must be a string, got {input!r}",
    "list_type": "must be a list of {item}, got {input!r}",
    "dataclass_type": "must be a mapping of keys, got {input!r}",
    "greater_than_equal": "must be >= {ge}, got {input!r}",
}


def _hint(root: Any, keys: tuple[str, ...]) -> Any:
    """The section class or the type (Annotated stripped) at ``keys``, a path from ``root``."""
    hint: Any = root
    for key in keys:
        hint = typing.get_type_hints(hint)[key]
    return hint


def explain(error: Any, root: Any) -> str:
    """One pydantic error of validating ``root`` (a dataclass of sections) as
    ``"<dotted key> <what is wrong>"``, naming the valid keys of a misspelled one."""
    loc, kind, ctx = error["loc"], error["type"], error.get("ctx", {})
    if kind in UNKNOWN_KEY:
        valid = ", ".join(field.name for field in dataclasses.fields(_hint(root, loc[:-1])))
        return f"{'.'.join(map(str, loc))} is not a known key; valid keys here: {valid}"
    if isinstance(ctx.get("error"), ParamsError):  # a rule across keys: it names its key
        return str(ctx["error"])
    keys = tuple(part for part in loc if isinstance(part, str))  # list indexes left out
    key = ".".join(keys) or "(top level)"
    if kind == "value_error":  # a rule()
        return f"{key} {ctx['error']}"
    if kind not in _WORDING:
        return f"{key}: {error['msg']}"
    item = typing.get_args(_hint(root, keys))[0].__name__ if kind == "list_type" else ""
    return f"{key} {_WORDING[kind].format(input=error['input'], item=item, **ctx)}"
