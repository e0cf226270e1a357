"""The one rule for numbers a user writes, shared by bench.toml sections and method parameters."""
from __future__ import annotations

import math

import numpy as np

# Tensors are float32: a larger magnitude (1e300) becomes inf in the first operation that uses it.
FLOAT32_MAX = float(np.finfo(np.float32).max)
FINITE = f"a finite number of magnitude at most {FLOAT32_MAX:.3g}"


def finite_float(value: float) -> float:
    """`value` if it is finite and float32 holds it; else ValueError(FINITE)."""
    if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
        raise ValueError(FINITE)
    return value
