"""What the report says about its own statistics: the level of each Δ, the detectable Δ, SSIM
judged against the real data, and the warning that a comparison is uninformative."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import test_report
from bench.report import build_report
from bench.report.stats import MODEL_LEVEL, SAMPLER_LEVEL
from test_report import METHODS, METRICS, make_store, value

UNINFORMATIVE = "Uninformative comparison."


def _outputs(root):
    out = root / "report"
    return ((out / "leaderboard.md").read_text(), (out / "report.html").read_text(),
            pd.read_csv(out / "leaderboard.csv").set_index("method"))


def test_one_train_seed_labels_every_delta_sampler_variance_only(tmp_path):
    root = make_store(tmp_path)
    build_report(root, ("md", "csv", "html"))
    md, html, board = _outputs(root)
    others = list(METHODS[1:])
    for metric in METRICS:
        assert (board.loc[others, f"{metric}_level"] == SAMPLER_LEVEL).all()
        assert board.loc[others, f"{metric}_delta_ci_low"].notna().all()   # the CI still shows
        assert board.loc[others, f"{metric}_delta_ci_high"].notna().all()
    cells = len(others) * len(METRICS)
    assert md.count(SAMPLER_LEVEL) >= cells and html.count(SAMPLER_LEVEL) >= cells
    assert MODEL_LEVEL + " (" not in md


def test_several_train_seeds_test_per_model_means(tmp_path):
    seeds = tuple(range(6))
    build_report(root := make_store(tmp_path, train_seeds=seeds, gen_seeds=(0, 1)), ("csv",))
    board = pd.read_csv(root / "report" / "leaderboard.csv").set_index("method")
    metric = "acc[scorer]"
    per_model = np.array([np.mean([value("aligned", k, g, metric) - value("baseline", k, g, metric)
                                   for g in (0, 1)]) for k in seeds])
    want = stats.permutation_test((per_model,), np.mean, permutation_type="samples",
                                  n_resamples=np.inf)
    assert board.at["aligned", f"{metric}_p"] == pytest.approx(want.pvalue)
    assert board.at["aligned", f"{metric}_delta"] == pytest.approx(per_model.mean())
    assert board.at["aligned", f"{metric}_level"] == MODEL_LEVEL
    n, sd = len(seeds), per_model.std(ddof=1)
    detectable = (stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.8, n - 1)) * sd / np.sqrt(n)
    assert board.at["aligned", f"{metric}_detectable_delta"] == pytest.approx(detectable)


def _noise_wins_when_lower_is_better(method, train_seed, gen_seed, metric):
    """Real SSIM 0.15: drift sits near it, fgscore's pure noise at 0.01, the baseline at 0.30."""
    if metric != "ssim":
        return value(method, train_seed, gen_seed, metric)
    near = {"baseline": 0.30, "drift:delta=-0.05": 0.17, "aligned": 0.25, "fgscore": 0.01}[method]
    return near + 0.001 * gen_seed


def test_ssim_best_is_the_closest_to_the_real_value_not_the_lowest(tmp_path):
    root = make_store(tmp_path, value_of=_noise_wins_when_lower_is_better)
    report = build_report(root, ("md", "csv", "html"))
    md, html, board = _outputs(root)
    assert report.tables[0].best("ssim") == {"drift:delta=-0.05"}
    assert "**0.171 ± 0.001**" in md and "**0.011" not in md
    assert "ssim (closest to real)" in md and "ssim (closest to real)" in html
    assert r"Δ \|ssim − real\|" in md and "Δ |ssim − real|" in html
    # Δ compares distances to the real value: drift is 0.13 closer than the baseline
    distance = {m: np.array([abs(_noise_wins_when_lower_is_better(m, 0, g, "ssim") - 0.15)
                             for g in range(3)]) for m in METHODS}
    assert board.at["drift:delta=-0.05", "ssim_delta"] == pytest.approx(0.02 - 0.15)
    assert board.at["fgscore", "ssim_delta"] == pytest.approx(
        np.mean(distance["fgscore"] - distance["baseline"]))


def _baseline_at_chance(method, train_seed, gen_seed, metric):
    """Two scored classes (chance 0.5): the baseline's accuracies are coin flips."""
    if method == "baseline" and metric.startswith("acc["):
        return 0.5 + (0.03, -0.02, 0.01)[gen_seed]
    return value(method, train_seed, gen_seed, metric)


def test_a_baseline_at_chance_makes_the_report_say_it_is_uninformative(tmp_path):
    build_report(root := make_store(tmp_path, value_of=_baseline_at_chance), ("md", "html"))
    md, html = ((root / "report" / name).read_text() for name in ("leaderboard.md", "report.html"))
    for text in (md, html):
        assert "not above chance (0.500 = 1/2 scored classes)" in text
        assert "more steps" in text and "larger image size" in text and "stronger scorer" in text
    assert md.index(UNINFORMATIVE) < md.index("## synth-tissue")
    assert html.index(UNINFORMATIVE) < html.index("<h2")


def test_a_weak_scorer_makes_the_report_say_it_is_uninformative(tmp_path, monkeypatch):
    monkeypatch.setattr(test_report, "REFERENCE", {**test_report.REFERENCE, "acc[scorer]": 0.7})
    build_report(root := make_store(tmp_path), ("md", "html"))
    md, html = ((root / "report" / name).read_text() for name in ("leaderboard.md", "report.html"))
    for text in (md, html):
        assert UNINFORMATIVE in text and "the scoring network is weak on the real images" in text
        assert "not above chance" not in text       # the baseline itself is fine


def test_a_good_baseline_and_scorer_give_no_warning(tmp_path):
    build_report(root := make_store(tmp_path), ("md", "html"))
    for name in ("leaderboard.md", "report.html"):
        assert UNINFORMATIVE not in (root / "report" / name).read_text()
