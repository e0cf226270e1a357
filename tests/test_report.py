"""bench report on stores built by hand: statistics, pairing, Holm, failures, refusals, outputs."""
import csv
import hashlib
import json
import re

import numpy as np
import pytest
from scipy import stats

from bench.core.console import make_console
from bench.core.errors import BenchError
from bench.core.store import (DONE, FAILED, FEATURES_FILE, LOG_FILE, METRICS_FILE, PLAN_FILE, RUN_CONFIG_FILE,
                              SAMPLES_FILE, STATE_FILE, SuiteStore, atomic_write_bytes, atomic_write_json)
from bench.report import build_report, print_leaderboard
from bench.report.stats import holm, two_level_bootstrap

DATASET = "synth-tissue"
METHODS = ("baseline", "drift:delta=-0.05", "aligned", "fgscore")
CLASSES = ["tumor", "stroma", "empty"]
SCORED = ["tumor", "stroma"]
METRICS = ["acc[scorer]", "acc[expert]", "ssim", "fid[scorer]", "kid[scorer]"]
REFERENCE = {"acc[scorer]": 0.93, "acc[expert]": 0.97, "ssim": 0.15}


def run_id(method, train_seed):
    return hashlib.sha256(f"{method}/{train_seed}".encode()).hexdigest()[:8]


def value(method, train_seed, gen_seed, metric):
    """Deterministic, different per (method, seed, metric), so every statistic is non-trivial."""
    h = int(hashlib.sha256(f"{method}{train_seed}{gen_seed}{metric}".encode()).hexdigest(), 16)
    above_chance = 0.4 if metric.startswith("acc[") else 0.0   # 2 scored classes: chance 0.5
    return 0.3 + above_chance + 0.05 * METHODS.index(method) + (h % 1000) / 20000 + 0.02 * train_seed


def metrics_record(method, train_seed, gen_seed, code_version="0.1.0", n_gen=20, extra=None,
                   value_of=value):
    prov = {m: {"extractor": m.partition("[")[2].rstrip("]") or "none", "weights_sha256": "abc",
                "n_gen": n_gen, "n_ref": 128, "versions": {"torch": "2.4"},
                "elapsed_s": 0.1 * gen_seed} for m in METRICS}
    prov.update(extra or {})
    return {"schema": 1, "dataset": DATASET, "method": method, "run_id": run_id(method, train_seed),
            "train_seed": train_seed, "gen_seed": gen_seed, "code_version": code_version,
            "class_names": CLASSES, "scored_classes": SCORED,
            "metrics": {m: value_of(method, train_seed, gen_seed, m) for m in METRICS},
            "per_class": {"recall[scorer]": {"tumor": 0.5, "stroma": 0.25 + 0.1 * gen_seed},
                          "ssim": {"tumor": 0.1, "stroma": 0.2}},
            "confusion": [[3, 1], [2, 2]], "reference": dict(REFERENCE),
            "provenance": prov}


def make_store(tmp_path, methods=METHODS, train_seeds=(0,), gen_seeds=(0, 1, 2), failed=(),
               missing=(), plan_order=None, channels=3, value_of=value):
    store = SuiteStore(tmp_path / "results", "suite")
    runs = []
    for method in methods:
        for k in train_seeds:
            runs.append({"run_id": run_id(method, k), "dataset": DATASET, "variant": method,
                         "train_seed": k, "gen_seeds": list(gen_seeds)})
            if (method, k) in missing:
                continue
            run_dir = store.run_dir(DATASET, method, k, run_id(method, k))
            atomic_write_json(run_dir / RUN_CONFIG_FILE, {
                "run_id": run_id(method, k), "dataset": DATASET, "method": method,
                "method_name": method.split(":")[0], "method_params": {}, "train_seed": k,
                "code_version": "0.1.0", "config": {}})
            log = "".join(json.dumps({"step": s, "loss": 1.0 / (s + 1) + 0.01, "lr": 1e-3}) + "\n"
                          for s in range(0, 100, 10))
            atomic_write_bytes(run_dir / LOG_FILE, log.encode())
            if (method, k) in failed:
                atomic_write_bytes(run_dir / FAILED, b"Traceback ...\nRunFailed: loss is NaN at step 40\n")
                continue
            atomic_write_bytes(run_dir / DONE, b"")
            for g in gen_seeds:
                eval_dir = store.eval_dir(run_dir, g)
                atomic_write_json(eval_dir / METRICS_FILE,
                                  metrics_record(method, k, g, value_of=value_of))
                rng = np.random.default_rng(g)
                labels = np.repeat(np.arange(2), 3)
                np.savez(eval_dir / SAMPLES_FILE, labels=labels,
                         images=rng.integers(0, 255, (6, 8, 8, channels), dtype=np.uint8))
                if method == "fgscore":
                    np.savez(eval_dir / FEATURES_FILE, labels=labels, t=np.array([99, 899]),
                             accuracy=np.array([0.875, 0.5]),
                             phi=rng.normal(size=(2, 6, 5)).astype(np.float32) + labels[:, None])
    order = plan_order(runs) if plan_order else runs
    atomic_write_json(store.plan_path, {"suite": "suite", "config": {"sample": {
        "samples_per_class": 10}}, "runs": order, "baseline": "baseline"})
    return store.root


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def cell(report, method, metric):
    lb = report.tables[0].leaderboard
    return lb[(lb.method == method) & (lb.metric == metric)].iloc[0]


def test_outputs_and_csv_columns_exactly_as_specified(tmp_path):
    root = make_store(tmp_path)
    report = build_report(root)
    out = root / "report"
    for name in ("leaderboard.md", "leaderboard.csv", "report.html"):
        assert (out / name).is_file()
    header = next(csv.reader(open(out / "leaderboard.csv")))
    stat = [f"{m}_{s}" for m in METRICS for s in ("mean", "std", "ci_low", "ci_high")]
    tests = [f"{m}_{s}" for m in METRICS for s in ("delta", "delta_ci_low", "delta_ci_high", "p",
                                                   "p_holm", "level", "detectable_delta")]
    assert header == ["dataset", "method", "n", *stat, *tests, "status", "runs_failed",
                      "runs_missing"]
    html = (out / "report.html").read_text()
    for column in ("acc[scorer]_mean", "acc[scorer]_ci_low", "acc[scorer]_ci_high", "acc[expert]_mean"):
        assert column in header and f"<th>{column}</th>" in html
    rows = read_csv(out / "leaderboard.csv")
    assert [r["method"] for r in rows] == list(METHODS) and all(r["n"] == "3" for r in rows)
    # one train seed: mean, std and the t interval equal scipy's on the same numbers
    v = np.array([value("aligned", 0, g, "ssim") for g in range(3)])
    low, high = stats.t.interval(0.95, 2, loc=v.mean(), scale=stats.sem(v))
    row = rows[2]
    assert float(row["ssim_mean"]) == pytest.approx(v.mean(), rel=1e-12)
    assert float(row["ssim_std"]) == pytest.approx(v.std(ddof=1), rel=1e-12)
    assert (float(row["ssim_ci_low"]), float(row["ssim_ci_high"])) == pytest.approx((low, high))
    assert sorted(p.name for p in (out / "figures").iterdir()) == sorted(
        f"synth-tissue_{k}.png" for k in ("samples", "confusion", "strip", "loss", "phi_pca"))
    assert {f.name for f in report.files} >= {"leaderboard.csv", "report.html"}
    assert build_report(root).tables[0].leaderboard.equals(report.tables[0].leaderboard)
    html = (out / "report.html").read_text()
    assert "nearest-centroid accuracy of held-out real images" in html
    assert "<td>99</td><td>0.875</td><td>6</td>" in html and "<td>899</td><td>0.500</td>" in html


def test_paired_test_pairs_by_seed_whatever_the_file_order(tmp_path):
    ordered = build_report(make_store(tmp_path / "a"), ("csv",)).tables[0].leaderboard

    def shuffle(runs):
        for r in runs:
            r["gen_seeds"] = r["gen_seeds"][::-1]
        return [runs[0], *runs[1:][::-1]]      # baseline stays first in the plan rows

    shuffled = build_report(make_store(tmp_path / "b", plan_order=shuffle),
                            ("csv",)).tables[0].leaderboard
    key = ["method", "metric"]
    a, b = ordered.sort_values(key).reset_index(drop=True), shuffled.sort_values(key).reset_index(drop=True)
    assert a.drop(columns=key).equals(b.drop(columns=key))
    x = [value("drift:delta=-0.05", 0, g, "fid[scorer]") for g in range(3)]
    y = [value("baseline", 0, g, "fid[scorer]") for g in range(3)]
    row = a[(a.method == "drift:delta=-0.05") & (a.metric == "fid[scorer]")].iloc[0]
    assert row.p == pytest.approx(stats.wilcoxon(x, y).pvalue)
    assert row.delta == pytest.approx(np.mean(np.subtract(x, y)))


def test_missing_seed_in_one_method_drops_that_pair(tmp_path):
    root = make_store(tmp_path, gen_seeds=(0, 1, 2, 3, 4))
    run_dir = SuiteStore(root.parent, root.name).run_dir(DATASET, "aligned", 0, run_id("aligned", 0))
    (run_dir / "eval" / "seed=1" / METRICS_FILE).unlink()
    report = build_report(root)
    c = cell(report, "aligned", "acc[scorer]")
    seeds = [0, 2, 3, 4]
    x = [value("aligned", 0, g, "acc[scorer]") for g in seeds]
    y = [value("baseline", 0, g, "acc[scorer]") for g in seeds]
    assert (c.n, c.n_pairs) == (4, 4)
    assert c.p == pytest.approx(stats.wilcoxon(x, y).pvalue)
    assert report.tables[0].row_status["aligned"] == "partial"
    assert "generation seed(s) 1" in (root / "report" / "leaderboard.md").read_text()


def test_holm_correction_across_methods_per_metric(tmp_path):
    report = build_report(make_store(tmp_path, gen_seeds=tuple(range(8))), ("csv",))
    for metric in METRICS:
        raw = [cell(report, m, metric).p for m in METHODS[1:]]
        m = len(raw)
        order = np.argsort(raw)
        want, running = [0.0] * m, 0.0
        for rank, i in enumerate(order):           # Holm by hand
            running = max(running, min(1.0, (m - rank) * raw[i]))
            want[i] = running
        got = [cell(report, meth, metric).p_holm for meth in METHODS[1:]]
        assert got == pytest.approx(want)
        assert np.isnan(cell(report, "baseline", metric).p_holm)
    assert holm([0.02, 0.01]) == pytest.approx([0.02, 0.02])


def test_two_train_seeds_use_the_seeded_two_level_bootstrap(tmp_path):
    report = build_report(make_store(tmp_path, train_seeds=(0, 1), channels=1), ("md",))
    c = cell(report, "aligned", "kid[scorer]")
    groups = [np.array([value("aligned", k, g, "kid[scorer]") for g in range(3)]) for k in (0, 1)]
    assert c.ci_method == "bootstrap2" and c.n == 6
    assert (c.ci_low, c.ci_high) == pytest.approx(two_level_bootstrap(groups))
    md = (tmp_path / "results/suite/report/leaderboard.md").read_text()
    assert "two-level percentile bootstrap" in md and "figures/synth-tissue_samples.png" in md
    assert len([f for f in report.files if f.suffix == ".png"]) == 5   # grayscale samples too


def test_failed_and_missing_runs_are_shown_in_every_format(tmp_path):
    root = make_store(tmp_path, failed={("aligned", 0)}, missing={("fgscore", 0)})
    report = build_report(root)
    rows = {r["method"]: r for r in read_csv(root / "report" / "leaderboard.csv")}
    assert (rows["aligned"]["status"], rows["aligned"]["runs_failed"], rows["aligned"]["n"]) == (
        "failed", "1", "0")
    assert (rows["fgscore"]["status"], rows["fgscore"]["runs_missing"]) == ("missing", "1")
    assert rows["aligned"]["acc[scorer]_mean"] == ""
    md = (root / "report" / "leaderboard.md").read_text()
    html = (root / "report" / "report.html").read_text()
    for text in (md, html):
        assert "aligned (failed)" in text
        assert "RunFailed: loss is NaN at step 40" in text
        assert "fgscore (missing)" in text
    assert [r.method for r in report.failed] == ["aligned"]
    console = make_console(record=True, width=200)
    print_leaderboard(report, console)
    shown = console.export_text()
    assert "fid[scorer]" in shown and "loss is NaN" in shown and "failed" in shown


def test_incompatible_runs_are_refused(tmp_path):
    root = make_store(tmp_path)
    store = SuiteStore(root.parent, root.name)
    path = store.eval_dir(store.run_dir(DATASET, "aligned", 0, run_id("aligned", 0)), 2) / METRICS_FILE
    atomic_write_json(path, metrics_record("aligned", 0, 2, code_version="0.2.0"))
    with pytest.raises(BenchError, match=r"code_version.*'0\.2\.0'.*aligned \(train seed 0"):
        build_report(root)
    atomic_write_json(path, metrics_record("aligned", 0, 2))
    config = path.parents[2] / RUN_CONFIG_FILE
    atomic_write_json(config, {**json.loads(config.read_text()), "code_version": "0.0.9"})
    with pytest.raises(BenchError, match=r"code_version of the training.*'0\.0\.9' in aligned"):
        build_report(root)
    atomic_write_json(config, {**json.loads(config.read_text()), "code_version": "0.1.0"})
    atomic_write_json(path, metrics_record("aligned", 0, 2, n_gen=10))
    with pytest.raises(BenchError, match=r"provenance of .* field 'n_gen'.*n_gen=10 in aligned"):
        build_report(root)
    assert not (root / "report").exists()            # refused before writing anything
    # a volatile field (timing) may differ
    atomic_write_json(path, metrics_record("aligned", 0, 2, extra={"ssim": {
        "n_gen": 20, "extractor": "none", "weights_sha256": "abc", "n_ref": 128,
        "versions": {"torch": "2.4"}, "elapsed_s": 99.0}}))
    build_report(root)


def test_html_is_self_contained_and_embeds_the_figures(tmp_path):
    root = make_store(tmp_path)
    report = build_report(root, formats=("html",))
    html = (root / "report" / "report.html").read_text()
    links = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html)
    assert links and all(u.startswith(("data:image/png;base64,", "#")) for u in links)
    assert "http://" not in html and "https://" not in html and "<link" not in html
    pngs = [f for f in report.files if f.suffix == ".png"]
    assert html.count('src="data:image/png;base64,') == len(pngs) == 5
    assert "<details>" in html and "weights_sha256" in html
    assert not (root / "report" / "leaderboard.md").exists()


def test_bad_input_is_a_bench_error(tmp_path):
    with pytest.raises(BenchError, match="no plan.json"):
        build_report(tmp_path)
    with pytest.raises(BenchError, match="unknown report format"):
        build_report(make_store(tmp_path), formats=("pdf",))


@pytest.mark.parametrize("section", ["metrics", "reference"])
def test_a_value_that_is_not_a_number_is_a_bench_error_naming_the_file(tmp_path, section):
    root = make_store(tmp_path)
    store = SuiteStore(root.parent, root.name)
    path = store.eval_dir(store.run_dir(DATASET, "aligned", 0, run_id("aligned", 0)), 1) / METRICS_FILE
    record = json.loads(path.read_text())
    record[section]["ssim"] = "abc"
    atomic_write_json(path, record)
    with pytest.raises(BenchError, match=rf"metrics\.json: {section}\['ssim'\] is 'abc', not a number"):
        build_report(root)
    assert not (root / "report").exists()


def test_a_plan_with_nothing_run_yet_reports_every_run_missing(tmp_path):
    root = make_store(tmp_path, missing={(m, 0) for m in METHODS})
    report = build_report(root, ("csv", "html"))
    rows = read_csv(root / "report" / "leaderboard.csv")
    assert [(r["method"], r["n"], r["status"]) for r in rows] == [(m, "0", "missing") for m in METHODS]
    assert len(report.problems) == len(METHODS)
    assert "not run yet" in (root / "report" / "report.html").read_text()


def test_an_interrupted_run_says_where_it_stopped_and_how_to_resume(tmp_path):
    """A training stopped after its checkpoint at step 800 is not "not run yet" (issue 34, item 8)."""
    root = make_store(tmp_path, missing={("fgscore", 0)})
    plan = json.loads((root / PLAN_FILE).read_text())
    atomic_write_json(root / PLAN_FILE, {**plan, "config": {**plan["config"], "train": {"steps": 1000}}})
    run_dir = SuiteStore(root.parent, root.name).run_dir(DATASET, "fgscore", 0, run_id("fgscore", 0))
    atomic_write_bytes(run_dir / STATE_FILE, b"a checkpoint")
    atomic_write_bytes(run_dir / LOG_FILE, b"".join(json.dumps({"step": s, "loss": 1.0}).encode() + b"\n"
                                                    for s in (400, 800)) + b'{"step": 9')  # torn last line
    build_report(root, ("csv", "html"))
    assert ("interrupted at step 800 of 1000; re-run `bench run` to resume from its last checkpoint"
            in (root / "report" / "report.html").read_text())


def test_every_format_prints_each_classifiers_ceiling_and_the_baselines_fraction_of_it(tmp_path):
    root = make_store(tmp_path)
    report = build_report(root)
    console = make_console(record=True, width=200)
    print_leaderboard(report, console)
    texts = [(root / "report" / name).read_text() for name in ("leaderboard.md", "report.html")]
    texts.append(console.export_text())
    for metric in ("acc[scorer]", "acc[expert]"):
        mean, ceiling = cell(report, "baseline", metric)["mean"], REFERENCE[metric]
        fraction = f"{metric} {ceiling:.3f} (the baseline's {mean:.3f} is {mean / ceiling:.0%} of it)"
        for text in texts:
            assert fraction in text.replace("\\[", "[").replace("\\]", "]").replace("&#x27;", "'")
