"""The shapes of the JSON files bench reads back: the store's (plan.json, a run's config.json,
metrics.json; their shapes are defined here), an export's and a diffusers folder's config.json (defined
beside their readers). A file of another shape (edited by hand, written by another tool) is refused as one
line naming the file, the field and the fix, before anything reads it, instead of crashing downstream.

Containers are checked strictly, since readers iterate them; leaf values are checked where they are
used (the report's `store_number` for metrics), so an old store's extra or missing fields still report."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.core.errors import BenchError


@dataclass(frozen=True)
class Obj:
    """A JSON object: `fields` checked where present, `required` ones must be present (a tuple of
    names: one of them)."""
    fields: dict = field(default_factory=dict)
    required: tuple[str | tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class MapOf:
    """A JSON object with any keys, every value of one shape."""
    value: object = object


@dataclass(frozen=True)
class ListOf:
    item: object = object


@dataclass(frozen=True)
class AnyOf:
    """Any one of `shapes` (e.g. an integer or a list of integers)."""
    shapes: tuple = ()


NUMBER = (int, float)
INTS = AnyOf((int, ListOf(int)))
RUN_ROW = Obj({"dataset": str, "variant": str, "method": str, "train_seed": int, "run_id": str,
               "gen_seeds": ListOf(int)}, required=("dataset", ("variant", "method"), "train_seed", "run_id"))
PLAN = Obj({"baseline": str, "suite": str, "config": MapOf(MapOf()), "prepared_data": MapOf(str),
            "runs": ListOf(RUN_ROW)}, required=("runs",))
RUN_CONFIG = Obj({"class_names": ListOf(str), "config": MapOf(MapOf()), "method": str, "run_id": str,
                  "train_seed": int})
TRAINED_RUN_CONFIG = Obj(RUN_CONFIG.fields, required=("config", "method", "run_id", "train_seed"))  # to load its model
METRICS = Obj({"metrics": MapOf(), "per_class": MapOf(MapOf()), "reference": MapOf(), "provenance": MapOf(),
               "class_names": ListOf(str), "scored_classes": ListOf(), "confusion": ListOf(ListOf(NUMBER))})

_JSON_NAMES = {dict: "an object", list: "a list", str: "a string", bool: "true/false", int: "an integer",
               float: "a number", type(None): "null", object: "any value"}


def _name(shape) -> str:
    if isinstance(shape, AnyOf):
        return " or ".join(map(_name, shape.shapes))
    if isinstance(shape, (Obj, MapOf)):
        return "an object"
    if isinstance(shape, ListOf):
        return "a list"
    shapes = shape if isinstance(shape, tuple) else (shape,)
    return " or ".join(_JSON_NAMES[s] for s in shapes)


def _problem(value, shape, where: str) -> str | None:
    """Where `value` departs from `shape` ("runs[0].gen_seeds is a string, not a list"), or None."""
    if shape is object:
        return None
    if isinstance(shape, AnyOf):
        if any(_problem(value, one, where) is None for one in shape.shapes):
            return None
        return f"{where} is {value!r}, not {_name(shape)}"
    if isinstance(shape, (Obj, MapOf)):
        if not isinstance(value, dict):
            return f"{where} is {_JSON_NAMES.get(type(value), type(value).__name__)}, not an object"
        if isinstance(shape, MapOf):
            items = value.items()
        else:
            missing = [" or ".join(k) if isinstance(k, tuple) else k for k in shape.required
                       if not any(name in value for name in (k if isinstance(k, tuple) else (k,)))]
            if missing:
                return f"{where} lacks {', '.join(missing)}"
            items = ((k, value[k]) for k in shape.fields if k in value)
        for key, item in items:
            inner = shape.value if isinstance(shape, MapOf) else shape.fields[key]
            if problem := _problem(item, inner, f"{where}.{key}"):
                return problem
        return None
    if isinstance(shape, ListOf):
        if not isinstance(value, list):
            return f"{where} is {_JSON_NAMES.get(type(value), type(value).__name__)}, not a list"
        return next(filter(None, (_problem(item, shape.item, f"{where}[{i}]") for i, item in enumerate(value))), None)
    shapes = shape if isinstance(shape, tuple) else (shape,)
    if isinstance(value, bool) and bool not in shapes or not isinstance(value, shapes):
        return f"{where} is {value!r}, not {_name(shape)}"
    return None


def checked(record, shape, path: Path, fix: str):
    """`record` (read from `path`) if it has `shape`; else BenchError naming the file, the field and `fix`."""
    if problem := _problem(record, shape, "the file"):
        raise BenchError(f"{path} is not of the shape bench reads: {problem.replace('the file.', '', 1)}; "
                         f"{fix}")
    return record
