import importlib
from pathlib import Path

from bench.methods import REGISTRY, method_name
from bench.testing import MethodConformance


class TestBaseline(MethodConformance):
    variant = "baseline"


def test_every_built_in_method_has_a_conformance_test():
    for module in Path(__file__).parent.glob("test_*.py"):  # every conformance subclass, even run alone
        importlib.import_module(module.stem)
    built_in = {name for name, cls in REGISTRY.items() if cls.__module__.startswith("bench.methods.")}
    covered = {method_name(cls.variant) for cls in MethodConformance.__subclasses__()}
    assert built_in and built_in <= covered, built_in - covered
