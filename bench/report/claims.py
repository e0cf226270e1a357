"""The claims section: each method's paper claim (bench.methods.claims) against the measured Δ.

Δ = the claim's method variant − its reference variant (the suite's baseline, or the method the
claim names, with the same parameters), on the metric's values as the paper measured them (SSIM:
the value itself, not its distance to the real data), paired by (train seed, generation seed) with
bench/report/stats.py's paired_test, the leaderboard's test. p is Holm-corrected across the tested
claims of one data set: a family of its own, the papers' hypotheses.

Verdicts: VERDICT_RULES, the words the report prints.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from bench.core.errors import BenchError
from bench.methods import parse_variant
from bench.methods.claims import Claim
from bench.report.collect import seed_keyed
from bench.report.stats import (ALPHA, SAMPLER_LEVEL, UNPAIRED, PairedTest, holm, paired_test,
                                smallest_exact_p)

AGREES, CONTRADICTS, INCONCLUSIVE = "agrees", "contradicts", "inconclusive"
NO_VERDICT_ONE_MODEL = "no verdict: one trained model per method"
NO_VERDICT_UNPAIRED = "no verdict: not measured"
NO_VERDICT_UNTESTABLE = "no verdict: not testable here"
NO_VERDICT_TOO_FEW = "no verdict: too few trained models"
VERDICT_RULES = (
    f"Verdict, significant meaning p (Holm) < {ALPHA:g}: {AGREES} = a significant Δ in the claimed "
    f"direction; {CONTRADICTS} = a significant Δ opposite to it, or a non-significant Δ whose 95% CI, "
    "at its end in the claimed direction, falls short of the effect the claim needs (the paper's "
    "magnitude where it reports one, else any effect at all in the claimed direction): the data rule out "
    f"the claimed effect; {INCONCLUSIVE} = a non-significant Δ whose CI still holds that effect (the "
    "design's detectable Δ says how large an effect it would have seen). No verdict with one trained "
    "model per method (the Δ then measures the sampler's noise, not the method), with too few "
    f"trained models for the exact test to reach p < {ALPHA:g} whatever the Δ (fewer than 6), where a "
    "variant or the metric is missing, or where the claim cannot be tested as a Δ here.")


@dataclass(frozen=True)
class ClaimResult:
    method: str          # the variant held to the claim
    reference: str       # the variant it is compared against
    claim: Claim
    test: PairedTest     # Δ = method − reference on the metric's values
    p_holm: float
    verdict: str         # AGREES, CONTRADICTS, INCONCLUSIVE or one of the NO_VERDICT_* texts
    reason: str          # why, in words


def variant_claims(variant: str) -> tuple[Claim, ...]:
    """The claims a method variant is held to; none for a method not registered here (a plug-in
    the report was not given) or parameters it cannot read."""
    try:
        cls, params = parse_variant(variant)
    except BenchError:
        return ()
    return cls.claims_for(params)


def reference_variant(variant: str, claim: Claim, baseline: str) -> str:
    """The suite's baseline, or the claim's reference method with this variant's parameters."""
    if claim.reference is None:
        return baseline
    _, colon, params = variant.partition(":")
    return claim.reference + colon + params


def verdict(claim: Claim, test: PairedTest, p_holm: float) -> tuple[str, str]:
    """(verdict, reason) of one claim by the rules of the module docstring."""
    if claim.untestable:
        return NO_VERDICT_UNTESTABLE, claim.untestable
    if test.n_units == 0 or not math.isfinite(test.delta):
        return NO_VERDICT_UNPAIRED, "no paired observations of both variants on this metric"
    if test.level == SAMPLER_LEVEL:
        return NO_VERDICT_ONE_MODEL, "train several models per method (--train-seeds) to test it"
    if smallest_exact_p(test.n_units) > ALPHA:   # no Δ could agree: a CI-based "contradicts" alone would be lopsided
        return NO_VERDICT_TOO_FEW, (f"with {test.n_units} trained models the exact test's smallest p is "
                                    f"{smallest_exact_p(test.n_units):.3g}; train more (--train-seeds)")
    signed = claim.sign * test.delta
    if p_holm < ALPHA:
        return ((AGREES, "significant Δ in the claimed direction") if signed > 0
                else (CONTRADICTS, "significant Δ opposite to the claimed direction"))
    # The effect the claim needs: the paper's magnitude, else any effect in its direction. Not the
    # design's detectable Δ: a null Δ's CI nearly always falls short of that, however weak the design.
    needed, what = ((claim.magnitude, f"the paper's magnitude ({claim.magnitude:g})")
                    if claim.magnitude is not None else (0.0, "any effect"))
    reach = claim.sign * (test.ci_high if claim.sign > 0 else test.ci_low)
    if math.isfinite(reach) and reach < needed:
        return CONTRADICTS, f"not significant, and the CI excludes {what} in the claimed direction"
    return INCONCLUSIVE, (f"not significant, and the CI still holds {what} in the claimed direction; "
                          f"this design detects |Δ| >= {test.detectable:.3g}")


def dataset_claims(obs: pd.DataFrame, methods: tuple[str, ...], baseline: str) -> tuple[ClaimResult, ...]:
    """Every claim of every method variant of one data set (obs: its observations), tested."""
    todo = [(method, claim, reference_variant(method, claim, baseline))
            for method in methods for claim in variant_claims(method)]
    tests = []
    for method, claim, reference in todo:
        values = obs[obs.metric == claim.metric] if not obs.empty and claim.metric else obs.iloc[:0]
        tested = not claim.untestable and reference in methods and reference != method
        tests.append(paired_test(seed_keyed(values[values.method == method]),
                                 seed_keyed(values[values.method == reference])) if tested else UNPAIRED)
    adjusted = holm([t.p for t in tests])
    return tuple(ClaimResult(method, reference, claim, test, p, *verdict(claim, test, p))
                 for (method, claim, reference), test, p in zip(todo, tests, adjusted))


def regime_here(config: dict) -> str:
    """The suite's own regime in the words of a claim's: data, size, start, space, training, seeds."""
    data, model, train, suite, sample = (config.get(k, {}) for k in ("data", "model", "train", "suite",
                                                                       "sample"))
    init = model.get("init", "")
    start = ("from scratch" if not init else "pretrained by bench pretrain, fine-tuned" if init == "pretrain"
             else f"fine-tuned from {init}")
    parts = [data.get("name"),
             f"{data['image_size']} px{' grayscale' if data.get('grayscale') else ''}" if "image_size" in data
             else None,
             start if model else None,
             ("latent space" if model.get("vae") else "pixel space") if model else None,
             f"{train['steps']} steps" if "steps" in train else None,
             f"{suite['train_seeds']} trained model(s) per method" if "train_seeds" in suite else None,
             f"{suite['seeds']} seeds x {sample['samples_per_class']} images per class"
             if "seeds" in suite and "samples_per_class" in sample else None]
    return ", ".join(p for p in parts if p) or "not recorded in plan.json"


CLAIM_COLUMNS = ["dataset", "method", "reference", "metric", "direction", "magnitude", "statement",
                 "citation", "paper_regime", "level", "n_units", "delta", "delta_ci_low", "delta_ci_high",
                 "p", "p_holm", "detectable_delta", "verdict", "reason"]


def claims_frame(claims_by_dataset: dict[str, tuple[ClaimResult, ...]]) -> pd.DataFrame:
    """claims.csv: one row per (data set, method variant, claim), CLAIM_COLUMNS."""
    rows = [{"dataset": dataset, "method": r.method, "reference": r.reference, "metric": r.claim.metric,
             "direction": r.claim.direction, "magnitude": r.claim.magnitude, "statement": r.claim.statement,
             "citation": r.claim.citation, "paper_regime": r.claim.regime, "level": r.test.level,
             "n_units": r.test.n_units, "delta": r.test.delta, "delta_ci_low": r.test.ci_low,
             "delta_ci_high": r.test.ci_high, "p": r.test.p, "p_holm": r.p_holm,
             "detectable_delta": r.test.detectable, "verdict": r.verdict, "reason": r.reason}
            for dataset, results in claims_by_dataset.items() for r in results]
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)
