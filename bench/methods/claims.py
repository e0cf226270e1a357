"""What a method's paper claims, as data the report can set against the measured Δ.

A method class lists its paper's findings in `claims` (a tuple of `Claim`, empty by default: a
plug-in declares its own the same way). Each claim is one signed comparison,
Δ = this variant − the reference variant on one metric, e.g. Nair 2024: expert accuracy +0.09
against the baseline. The report (bench/report/claims.py) gives each a verdict.
"""
from __future__ import annotations

from dataclasses import dataclass

HIGHER, LOWER = "higher", "lower"   # the sign of Δ = method − reference the paper reports


@dataclass(frozen=True)
class Claim:
    statement: str             # the finding, in a few words
    metric: str                # as the report spells it: "acc[expert]", "ssim", "fid[scorer]", "aug_gain"
    direction: str             # HIGHER or LOWER
    magnitude: float | None    # |Δ| the paper reports, in the metric's units; None when it gives none
    regime: str                # the paper's setting, e.g. "Kather 2016, 64 px grayscale, 20 epochs, pretrained"
    citation: str
    reference: str | None = None   # method compared against (same parameters); None: the suite's baseline
    untestable: str = ""       # why bench cannot test it as a Δ; then the claim gets no verdict

    def __post_init__(self):
        if self.direction not in (HIGHER, LOWER):
            raise ValueError(f"claim direction must be {HIGHER!r} or {LOWER!r}, not {self.direction!r}")
        if self.magnitude is not None and self.magnitude < 0:
            raise ValueError("claim magnitude is a size (>= 0); the direction carries the sign")

    @property
    def sign(self) -> int:
        return 1 if self.direction == HIGHER else -1
