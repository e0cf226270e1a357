"""Adding a metric is one new file: a metric registered from this test module, as a plug-in would, is
computed by the evaluation with its provenance, and the report judges it by its declared direction."""
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch.nn.functional as F

import test_report
from bench.core.errors import BenchError
from bench.metrics import Metric, Scoring, check_metric_names, classifiers_needed, evaluate_samples, register_metric
from bench.metrics import metric_names
from bench.metrics.extractors import EXTRACTORS, FeatureExtractor, register_extractor
from bench.metrics.registry import LOWER, METRICS, direction_of
from bench.report import build_report
from bench.testing import toy_data
from test_distributed import BENCH, ENV, write_suite
from test_report import make_store

STATISTIC = "|mean grey level of the generated images - of the real ones|, over every channel"


def brightness_gap(scoring: Scoring, network: None = None) -> dict:
    def gap(c=None):
        fake = scoring.fake if c is None else scoring.fake[scoring.fake_labels == c]
        real = scoring.real if c is None else scoring.real[scoring.real_labels == c]
        return abs(float(fake.mean()) - float(real.mean()))
    return {"value": gap(), "per_class": {scoring.name_of[c]: gap(c) for c in scoring.scored},
            "provenance": {"statistic": STATISTIC, "unit": "grey levels"}}


@pytest.fixture
def brightness_metric():
    metric = register_metric(Metric("brightness_gap", LOWER, brightness_gap, min_images=1))
    yield metric
    del METRICS[metric.kind]


def test_a_registered_metric_is_computed_with_its_provenance(brightness_metric, tmp_path):
    data = toy_data()
    brighter = np.clip(data.test_x.astype(int) + 10, 0, 255).astype(np.uint8)   # 10 grey levels up, some clipped
    out = evaluate_samples(brighter, data.test_y, data.test_x, data.test_y, class_names=data.class_names,
                           scored_classes=(0, 1), classifiers={}, metrics=["ssim", "brightness_gap"],
                           cache_dir=tmp_path, reference_key="toy-test")
    scored = np.isin(data.test_y, (0, 1))
    expected = abs(brighter[scored].mean() - data.test_x[scored].mean())
    assert out["metrics"]["brightness_gap"] == pytest.approx(expected) and 5 < expected <= 10
    assert set(out["per_class"]["brightness_gap"]) == {data.class_names[0], data.class_names[1]}
    prov = out["provenance"]["brightness_gap"]
    assert prov["statistic"] == STATISTIC and prov["n_gen"] == prov["n_ref"] == int(scored.sum())
    assert classifiers_needed(["brightness_gap"]) == [] and direction_of("brightness_gap") == LOWER


def test_an_unregistered_metric_is_refused_and_a_registered_one_is_not(brightness_metric):
    assert check_metric_names(["brightness_gap"]) == ["brightness_gap"]
    with pytest.raises(BenchError, match="unknown metric.*brightness_gap\\[scorer\\].*choose from.*brightness_gap"):
        check_metric_names(["brightness_gap[scorer]"])
    with pytest.raises(ValueError, match="direction"):
        register_metric(Metric("sideways", "sideways", brightness_gap))


def test_the_report_judges_a_registered_metric_by_its_direction_and_shows_its_provenance(
        brightness_metric, tmp_path, monkeypatch):
    monkeypatch.setattr(test_report, "METRICS", [*test_report.METRICS, "brightness_gap"])
    record = test_report.metrics_record
    monkeypatch.setattr(test_report, "metrics_record", lambda *args, **kw: record(
        *args, extra={"brightness_gap": {"statistic": STATISTIC, "n_gen": 20, "n_ref": 128}}, **kw))
    report = build_report(make_store(tmp_path))
    lb = report.tables[0].leaderboard
    rows = lb[lb.metric == "brightness_gap"]
    assert len(rows) == len(test_report.METHODS)
    md = (tmp_path / "results" / "suite" / "report" / "leaderboard.md").read_text()
    assert "brightness\\_gap ↓" in md or "brightness_gap ↓" in md   # judged lower-is-better, as declared
    assert list(report.tables[0].metrics).index("brightness_gap") == len(report.tables[0].metrics) - 1
    folder = tmp_path / "results" / "suite" / "report"
    assert STATISTIC in (folder / "report.html").read_text()   # its provenance, with every built-in one's


def pooled(**_) -> FeatureExtractor:
    """A feature network in a line: 2 x 2 mean-pooled pixels, 12-d features of RGB images."""
    return FeatureExtractor("pooled", None, False, lambda x: F.adaptive_avg_pool2d(x.float(), 2).flatten(1),
                            {"network": "2 x 2 mean pool of the pixels"})


def test_a_registered_extractor_gives_every_feature_metric_in_its_space(tmp_path):
    register_extractor("pooled", pooled)
    try:
        assert {"fid[pooled]", "kid[pooled]", "coverage[pooled]"} <= set(metric_names())
        data = toy_data()
        brighter = np.clip(data.test_x.astype(int) + 30, 0, 255).astype(np.uint8)
        scores = [evaluate_samples(fake, data.test_y, data.test_x, data.test_y, class_names=data.class_names,
                                   scored_classes=(0, 1), classifiers={}, metrics=["fid[pooled]"],
                                   cache_dir=tmp_path, reference_key="toy-test") for fake in (data.test_x, brighter)]
        assert abs(scores[0]["metrics"]["fid[pooled]"]) < 0.01 and scores[1]["metrics"]["fid[pooled]"] > 0.9 * 30**2 * 12   # ~ the mean shift squared, 12 dims
        assert scores[1]["provenance"]["fid[pooled]"]["extractor"] == "pooled"
    finally:
        del EXTRACTORS["pooled"]


def readme_metric_source() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (Path(__file__).parents[1] / "README.md").read_text(), re.S)
    (block,) = [b for b in blocks if "register_metric" in b]
    return block


@pytest.mark.timeout(600)
def test_the_readme_metric_plugin_is_computed_by_ray_workers_and_judged_by_the_report(tmp_path):
    plugin = tmp_path / "brightness.py"
    plugin.write_text(readme_metric_source())
    config = write_suite(tmp_path / "bench.toml", suite={"name": "m", "methods": ["baseline"], "seeds": 1},
                         metrics={"names": ["ssim", "brightness_gap"]}, execution={"device": "cpu"})
    results = tmp_path / "results"
    run = subprocess.run([*BENCH, "run", "--config", str(config), "--results", str(results), "--plugin", str(plugin)],
                         env=ENV, cwd=tmp_path, capture_output=True, text=True, timeout=500)
    assert run.returncode == 0, run.stderr[-3000:]
    (metrics_file,) = (results / "m").glob("runs/**/metrics.json")   # computed in a Ray worker
    record = json.loads(metrics_file.read_text())
    assert 0 <= record["metrics"]["brightness_gap"] < 255 and record["provenance"]["brightness_gap"]["unit"] == "grey levels"
    report = subprocess.run([*BENCH, "report", "--results", str(results), "--plugin", str(plugin)],
                            env=ENV, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    md = (results / "m" / "report" / "leaderboard.md").read_text()
    assert "brightness\\_gap ↓" in md or "brightness_gap ↓" in md   # judged lower-is-better, as declared
