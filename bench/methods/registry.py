"""Method lookup: variant strings, plug-in files and modules, the `bench.methods` entry points."""
from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import importlib.util
import sys
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.core.errors import BenchError
from bench.core.field_values import NotOfType, from_text, is_union
from bench.methods.base import REGISTRY, ConditioningMethod, canonical_variant, method_class_path

ENTRY_POINT_GROUP = "bench.methods"


# What a plug-in's code may raise and bench reports as one line: any error, and sys.exit() (SystemExit),
# which would otherwise end bench silently with the plug-in's exit code. At import also KeyboardInterrupt,
# which would end it silently with 130 (a Ctrl-C while a plug-in imports is reported so too).
_PLUGIN_FAILURES = (Exception, SystemExit)
_IMPORT_FAILURES = (*_PLUGIN_FAILURES, KeyboardInterrupt)


def load_entry_points() -> None:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except BenchError:
            raise
        except _IMPORT_FAILURES as err:  # a broken third-party plug-in must not hide the built-ins
            raise BenchError(f"entry point {ep.name!r} of group {ENTRY_POINT_GROUP} failed to load: "
                             f"{_describe(err)}") from None


def _describe(err: BaseException) -> str:
    if isinstance(err, SystemExit):
        return f"it called sys.exit({err.code!r}) while being imported"
    if isinstance(err, KeyboardInterrupt):
        return "it was interrupted (KeyboardInterrupt) while being imported"
    return f"{type(err).__name__}: {err}"


@contextmanager
def method_code(cls: type[ConditioningMethod], hook: str, context: str) -> Iterator[None]:
    """Run a method's own code (`hook`: its Params, `check`, `check_sampler`) on the user's input: a
    ValueError, how a method refuses a value, becomes the BenchError "{context}: {message}"; anything
    else it raises is a bug of that code, reported as one line naming it, never a traceback."""
    try:
        yield
    except BenchError:
        raise
    except ValueError as err:
        raise BenchError(f"{context}: {err}") from None
    except _PLUGIN_FAILURES as err:
        raise BenchError(f"{hook} of method {cls.name!r} ({method_class_path(cls)}) raised {type(err).__name__}: "
                         f"{err} (a method refuses a bad value with ValueError); fix that code or leave the method "
                         "out") from None


def load_plugins(specs: list[str]) -> None:
    """Every method the command line can name: the entry-point group's, then each plug-in of `specs`."""
    load_entry_points()
    for spec in specs:
        load_plugin(spec)


def load_plugin(spec: str) -> None:
    """Import a file (`path/to/file.py`) or a module name; its subclasses register themselves."""
    if spec.endswith(".py") or Path(spec).is_file():
        path = Path(spec)
        if not path.is_file():
            raise BenchError(f"plugin file {spec} not found; pass an existing .py file or a module name")
        module_name = f"bench_plugin_{path.stem}"
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[module_name] = module
        try:
            loader_spec.loader.exec_module(module)
        except BenchError as err:  # bench refused the plug-in (e.g. a method name already taken): one line
            raise BenchError(f"plugin {spec}: {err}") from None
        except _IMPORT_FAILURES as err:
            raise BenchError(f"plugin {spec} failed to import: {_describe(err)}") from None
        return
    try:
        importlib.import_module(spec)
    except ImportError as err:
        raise BenchError(f"plugin module {spec!r} cannot be imported ({err}); pass a .py path or an installed module") from None
    except _IMPORT_FAILURES as err:
        raise BenchError(f"plugin module {spec!r} failed to import: {_describe(err)}") from None


def _parse_value(text: str, hint, key: str, name: str):
    try:
        return from_text(text, hint)
    except NotOfType as err:
        raise BenchError(f"bad value {err.value!r} for {name}:{key}; expected "
                         f"{err.reason or _expected(err.hint)}") from None


def _expected(hint) -> str:
    """What a value of a parameter's type hint looks like, for a message: "one of eps, shifted", "float"."""
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(map(str, typing.get_args(hint)))
    if hint is bool:
        return "true or false"
    if is_union(hint):
        return " or ".join(getattr(arm, "__name__", str(arm)) for arm in typing.get_args(hint))
    return getattr(hint, "__name__", str(hint))


def method_name(variant: str) -> str:
    """The registered name a variant string starts with: `drift:delta=-0.05` -> `drift`."""
    return variant.strip().partition(":")[0]


def parse_variant(text: str) -> tuple[type[ConditioningMethod], object]:
    """`drift:delta=-0.05,target=shifted` -> (the class, its validated Params)."""
    name, rest = method_name(text), text.strip().partition(":")[2]
    if name not in REGISTRY:
        raise BenchError(f"unknown method {name!r}; registered methods: {', '.join(sorted(REGISTRY))} "
                         "(see `bench methods`; add your own with --plugin)")
    cls = REGISTRY[name]
    fields = {f.name: f for f in dataclasses.fields(cls.Params)}
    hints = typing.get_type_hints(cls.Params)
    values = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in fields:
            valid = ", ".join(f"{k} (default {f.default!r})" for k, f in fields.items()) or "none"
            raise BenchError(f"unknown parameter {key!r} for method {name}; valid parameters: {valid}")
        values[key] = _parse_value(value.strip(), hints[key], key, name)
    with method_code(cls, "Params", f"bad parameters for method {name}"):
        params = cls.Params(**values)
    return cls, params


def canonical(text: str) -> str:
    cls, params = parse_variant(text)
    return canonical_variant(cls.name, params)


def method_table() -> list[dict]:
    """Every registered method with its parameters, defaults and paper (for `bench methods`)."""
    rows = []
    for name in sorted(REGISTRY):
        cls = REGISTRY[name]
        params = [(f.name, f.default) for f in dataclasses.fields(cls.Params)]
        rows.append({"name": name, "paper": cls.paper, "params": params,
                     "doc": (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""})
    return rows
