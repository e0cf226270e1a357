"""Each paper's claim as data (bench.methods.claims) and its verdict (bench/report/claims.py), from
observations whose outcome is known."""
import numpy as np
import pandas as pd
import pytest

from bench.core.errors import BenchError
from bench.methods import REGISTRY, ConditioningMethod
from bench.methods.claims import HIGHER, LOWER, Claim
from bench.report import build_report
from bench.report.claims import (AGREES, CONTRADICTS, INCONCLUSIVE, NO_VERDICT_ONE_MODEL,
                                 NO_VERDICT_TOO_FEW, NO_VERDICT_UNPAIRED, NO_VERDICT_UNTESTABLE, dataset_claims,
                                 reference_variant, variant_claims, verdict)
from bench.report.claims_table import UNINFORMATIVE_CAVEAT
from bench.report.stats import MODEL_LEVEL, SAMPLER_LEVEL, PairedTest
from test_report import make_store
from test_report_levels import _baseline_at_chance

BASE = 0.5
METRIC = "acc[expert]"    # aligned's claim: higher, by 0.09 (Nair 2024)


def observations(per_model_diffs, gen_seeds=2, method="aligned", metric=METRIC):
    """The baseline at BASE (plus a seed pattern both share) and `method` at BASE + the diff of its
    train seed, on every generation seed: the per-model differences are exactly `per_model_diffs`."""
    rows = []
    for k, diff in enumerate(per_model_diffs):
        for g in range(gen_seeds):
            shared = 0.01 * ((k * 7 + g * 3) % 5)
            rows += [("baseline", k, g, metric, BASE + shared), (method, k, g, metric, BASE + shared + diff)]
    return pd.DataFrame(rows, columns=["method", "train_seed", "gen_seed", "metric", "value"])


def aligned_expert_claim(obs):
    result = next(r for r in dataset_claims(obs, ("baseline", "aligned"), "baseline") if r.claim.metric == METRIC)
    assert result.claim.direction == HIGHER and result.claim.magnitude == pytest.approx(0.09)
    return result


def test_a_significant_delta_in_the_claimed_direction_agrees():
    r = aligned_expert_claim(observations([0.10, 0.12, 0.08, 0.11, 0.09, 0.10]))
    assert r.test.level == MODEL_LEVEL and r.test.delta == pytest.approx(0.10)
    assert r.p_holm == pytest.approx(2 / 2 ** 6) and r.verdict == AGREES


def test_a_significant_delta_against_the_claim_contradicts():
    r = aligned_expert_claim(observations([-0.10, -0.12, -0.08, -0.11, -0.09, -0.10]))
    assert r.p_holm < 0.05 and r.verdict == CONTRADICTS and "opposite" in r.reason


def test_a_null_delta_whose_ci_excludes_the_papers_magnitude_contradicts():
    r = aligned_expert_claim(observations([0.01, -0.01, 0.02, -0.02, 0.005, -0.005]))
    assert r.p_holm > 0.05 and r.test.ci_high < 0.09
    assert r.verdict == CONTRADICTS and "paper's magnitude (0.09)" in r.reason


def test_a_null_delta_whose_ci_still_holds_the_claimed_effect_is_inconclusive():
    r = aligned_expert_claim(observations([0.30, -0.20, 0.25, -0.15, 0.20, -0.10]))
    assert r.p_holm > 0.05 and r.test.ci_high > 0.09 and r.verdict == INCONCLUSIVE


def test_one_trained_model_per_method_never_gets_a_verdict():
    # every generation seed favours aligned by far: the sampler-level test is significant, yet no verdict
    obs = observations([0.2], gen_seeds=8)
    r = aligned_expert_claim(obs)
    assert r.test.level == SAMPLER_LEVEL and r.test.p < 0.05
    assert r.verdict == NO_VERDICT_ONE_MODEL


def test_too_few_trained_models_for_the_exact_test_to_reach_significance_get_no_verdict():
    # five models: the smallest p is 2/2**5 > 0.05, so nothing could agree; the narrow CI is no contradiction
    r = aligned_expert_claim(observations([0.01, -0.01, 0.02, -0.02, 0.005]))
    assert r.test.level == MODEL_LEVEL and r.test.ci_high < 0.09 and r.verdict == NO_VERDICT_TOO_FEW


def test_without_a_magnitude_a_null_delta_is_inconclusive_however_wide_the_design():
    claim = Claim("x lowers fid", "fid[scorer]", LOWER, None, "paper regime", "someone 2024")
    # drift's FID in the first powered run: a CI far inside a detectable Δ of 216 rules nothing out
    test = PairedTest(18, MODEL_LEVEL, 6, "", delta=-27.2, ci_low=-150.4, ci_high=86.5, p=1.0, detectable=216)
    verdict_, reason = verdict(claim, test, 1.0)
    assert verdict_ == INCONCLUSIVE and "any effect" in reason and "216" in reason
    # a tight CI around 0 that still reaches into the claimed direction: no effect is ruled out either
    test = PairedTest(18, MODEL_LEVEL, 6, "", delta=0.1, ci_low=-0.2, ci_high=0.4, p=0.6, detectable=0.5)
    assert verdict(claim, test, 0.6)[0] == INCONCLUSIVE


def test_without_a_magnitude_a_ci_wholly_against_the_claim_contradicts():
    claim = Claim("x lowers fid", "fid[scorer]", LOWER, None, "paper regime", "someone 2024")
    # not significant after Holm, yet the CI lies wholly above 0: no lowering at all is left
    test = PairedTest(18, MODEL_LEVEL, 6, "", delta=0.3, ci_low=0.05, ci_high=0.55, p=0.03, detectable=0.4)
    assert verdict(claim, test, 0.09) == (CONTRADICTS, "not significant, and the CI excludes any effect in "
                                                       "the claimed direction")


def test_missing_metric_or_variant_and_untestable_claims_get_no_verdict():
    results = dataset_claims(observations([0.1] * 6), ("baseline", "aligned", "aligned-clean", "fgscore"),
                             "baseline")
    by = {(r.method, r.claim.metric): r for r in results}
    assert by[("aligned", "ssim")].verdict == NO_VERDICT_UNPAIRED              # no ssim observed
    assert by[("aligned-clean", METRIC)].reference == "aligned"
    assert by[("aligned-clean", METRIC)].verdict == NO_VERDICT_UNPAIRED        # aligned-clean not observed
    assert by[("fgscore", "")].verdict == NO_VERDICT_UNTESTABLE


def test_claims_are_declared_per_variant_and_against_the_reference_with_the_same_parameters():
    assert {c.metric for c in variant_claims("aligned")} == {"acc[expert]", "ssim"}
    assert {c.metric for c in variant_claims("drift:delta=-0.05")} == {"fid[scorer]", "kid[scorer]"}
    assert variant_claims("drift:delta=0") == ()                # delta = 0 is the baseline itself
    assert variant_claims("ssl")[0].metric == "aug_gain" and variant_claims("baseline") == ()
    assert variant_claims("not-registered-plugin") == ()
    (clean,) = variant_claims("aligned-clean:w2=2.0")
    assert reference_variant("aligned-clean:w2=2.0", clean, "baseline") == "aligned:w2=2.0"
    assert reference_variant("aligned", variant_claims("aligned")[0], "my-baseline") == "my-baseline"
    for cls in REGISTRY.values():
        for claim in cls.claims:
            assert claim.statement and claim.regime and claim.citation and (claim.metric or claim.untestable)


def test_a_plugin_declares_claims_like_a_built_in_and_a_bad_declaration_is_refused():
    try:
        class Plugin(ConditioningMethod):
            name = "claims-test-plugin"
            claims = (Claim("plug-in raises acc", "acc[scorer]", HIGHER, 0.05, "r", "c"),)

        assert variant_claims("claims-test-plugin") == Plugin.claims
        with pytest.raises(BenchError, match="claims of method"):
            class Bad(ConditioningMethod):
                name = "claims-test-bad"
                claims = ("lower fid",)
    finally:
        REGISTRY.pop("claims-test-plugin", None)
        REGISTRY.pop("claims-test-bad", None)
    with pytest.raises(ValueError, match="direction"):
        Claim("s", "acc[scorer]", "up", None, "r", "c")


def test_every_format_shows_the_claims_and_claims_csv_holds_them(tmp_path):
    root = make_store(tmp_path, train_seeds=tuple(range(6)), gen_seeds=(0,))
    report = build_report(root)
    claims = pd.read_csv(root / "report" / "claims.csv")
    assert set(claims.method) == {"drift:delta=-0.05", "aligned", "fgscore"}
    aligned = claims[(claims.method == "aligned") & (claims.metric == METRIC)].iloc[0]
    assert aligned.level == MODEL_LEVEL and aligned.reference == "baseline"
    assert aligned.verdict in (AGREES, CONTRADICTS, INCONCLUSIVE)
    assert np.isfinite(aligned.p_holm) and np.isfinite(aligned.delta_ci_low)
    md, html = ((root / "report" / name).read_text() for name in ("leaderboard.md", "report.html"))
    for text in (md, html):
        assert "What the papers claim" in text and "Nair et al. 2024" in text
        assert "paper: Kather 2016, 64 px grayscale" in text and "here:" in text
    assert report.tables[0].claims and all(r.verdict for r in report.tables[0].claims)


def read_md(report_dir):
    """leaderboard.md with markdown's escapes undone, as a reader sees it."""
    return (report_dir / "leaderboard.md").read_text().replace("\\", "")


def test_claims_on_an_uninformative_comparison_say_so(tmp_path):
    informative = make_store(tmp_path / "a", train_seeds=(0, 1))
    at_chance = make_store(tmp_path / "b", train_seeds=(0, 1), value_of=_baseline_at_chance)
    assert UNINFORMATIVE_CAVEAT not in read_md(build_report(informative, ("md",)).report_dir)
    assert UNINFORMATIVE_CAVEAT in read_md(build_report(at_chance, ("md",)).report_dir)
