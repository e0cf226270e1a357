"""Conditioning methods: `ConditioningMethod` and one file per method; subclasses register themselves."""
from bench.methods.base import REGISTRY, ConditioningMethod, Denoiser, canonical_variant
from bench.methods.context import MethodContext
from bench.methods import aligned, baseline, drift  # noqa: F401  (defining a subclass registers it)
from bench.methods import fgscore, ssl  # noqa: F401  (registers)
from bench.methods.registry import (canonical, load_entry_points, load_plugin, load_plugins,
                                    method_code, method_name, method_table, parse_variant)

__all__ = ["REGISTRY", "ConditioningMethod", "Denoiser", "MethodContext", "canonical",
           "canonical_variant", "load_entry_points", "load_plugin", "load_plugins",
           "method_code", "method_name", "method_table", "parse_variant"]
