"""A value a user gives a dataclass field (a bench.toml key, a method parameter), checked against the
field's type hint and returned in that type: the one owner of the hints a field may have and of what each
accepts. Two readers: `from_toml` takes what TOML has already typed (only an integer for a float is
converted), `from_text` parses the text of a command-line `method:key=value`. Both raise `NotOfType`,
from which each caller words its own message.
"""
from __future__ import annotations

import types
import typing
from typing import Literal

from bench.core.numbers import finite_float

TEXT_TRUE, TEXT_FALSE = ("true", "1"), ("false", "0")   # how text spells a bool, in any case
TEXT_ITEM_SEPARATOR = "/"   # a tuple's items in text ("," separates a variant's parameters)


class NotOfType(ValueError):
    """`value` is not a value of `hint`. For a tuple, `value` and `hint` are the item at fault and `index`
    its position (outermost first); `reason`, where given, says more than the hint does (a float's range)."""

    def __init__(self, value, hint, index: tuple[int, ...] = (), reason: str | None = None):
        super().__init__(reason or f"{value!r} is not a value of {hint}")
        self.value, self.hint, self.index, self.reason = value, hint, index, reason


def is_union(hint) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def from_toml(value, hint):
    """`value` as TOML gives it, checked against `hint` (int, float, bool, str, Literal, tuple, a union)."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise NotOfType(value, hint)
        return value
    if is_union(hint):
        return _first_arm(from_toml, value, hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise NotOfType(value, hint)
        return tuple(_item(from_toml, v, typing.get_args(hint)[0], i) for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise NotOfType(value, hint)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):   # bool is an int to Python
            raise NotOfType(value, hint)
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise NotOfType(value, hint)
        return _finite(float(value), value, hint)
    if hint is str:
        if not isinstance(value, str):
            raise NotOfType(value, hint)
        return value
    raise TypeError(f"unsupported config type {hint}")


def from_text(text: str, hint):
    """`text` parsed as a value of `hint`. A hint it has no parser for (str, Path, a plug-in's own type)
    gets the text itself, which the field's dataclass then checks."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        if text not in typing.get_args(hint):
            raise NotOfType(text, hint)
        return text
    if is_union(hint):
        return _first_arm(from_text, text, hint)
    if origin is tuple:
        return tuple(_item(from_text, part, typing.get_args(hint)[0], i)
                     for i, part in enumerate(text.split(TEXT_ITEM_SEPARATOR)))
    if hint is bool:
        if text.lower() not in (*TEXT_TRUE, *TEXT_FALSE):
            raise NotOfType(text, hint)
        return text.lower() in TEXT_TRUE
    if hint in (int, float):
        try:
            number = hint(text)
        except ValueError:
            raise NotOfType(text, hint) from None
        return _finite(number, text, hint) if hint is float else number
    return text


def _finite(number: float, value, hint) -> float:
    try:
        return finite_float(number)
    except ValueError as err:
        raise NotOfType(value, hint, reason=str(err)) from None


def _first_arm(read, value, hint):
    """`value` as the first arm of the union `hint` that takes it; the whole union is what it is not."""
    for arm in typing.get_args(hint):
        try:
            return read(value, arm)
        except NotOfType:
            continue
    raise NotOfType(value, hint)


def _item(read, value, hint, index: int):
    try:
        return read(value, hint)
    except NotOfType as err:
        raise NotOfType(err.value, err.hint, (index, *err.index), err.reason) from None
