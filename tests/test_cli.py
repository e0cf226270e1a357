"""The command line as a user meets it: bad input, a whole tiny suite, resume, report."""
import json

import pytest
from cli_runner import assert_refused, run_cli

from bench.core.store import DONE
from bench.engine.curves import read_curves


@pytest.mark.parametrize("extra, toml, fragment", [
    (["--config", "missing.toml"], None, "not found"),
    ([], "[suite\n", "is not valid TOML"),
    (["--methods", "baseline,nope"], "", "unknown method 'nope'"),
    (["--dataset", "no-such-set"], "", "unknown data set 'no-such-set'"),
    (["--seeds", "0"], "", "suite.seeds"),
    (["--methods", "drift:delta=x"], "", "bad value 'x' for drift:delta"),
    (["--methods", "baseline,ssl:encoder=scorer"], "", "ssl encoder 'scorer' is refused"),
    (["--preset", ""], "", "unknown preset ''; valid presets: tiny"),
    (["--config", "."], "", "config file . is a folder; pass --config PATH/TO/bench.toml"),
    (["--methods", "baseline,delta=1"], "", "--methods: 'delta=1' is a key=value parameter but follows 'baseline', "
                                            "which has no parameters; write parameters after their method and a "
                                            "colon, e.g. baseline:delta=1"),
    (["--methods", "delta=1,drift"], "", "'delta=1' is a key=value parameter but comes first"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(monkeypatch, capsys, tmp_path, extra, toml, fragment):
    monkeypatch.chdir(tmp_path)
    if toml is not None:
        (tmp_path / "bench.toml").write_text(toml)
    assert_refused(monkeypatch, capsys, "run", "--preset", "tiny", "--executor", "local", "--results", "results",
                   *extra, store=tmp_path / "results", says=fragment)


def test_tiny_suite_runs_resumes_and_reports(monkeypatch, capsys, tmp_path):
    """A grid with one variant that diverges: it is recorded FAILED, the rest finishes, exit 1. The store's
    path holds rich markup ('[/]' closes no tag): it is printed as given (issue 34)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bench.toml").write_text('[suite]\nname = "t"\nseeds = 2\n'
                                         'methods = ["baseline", "drift:delta=0.1", "drift:delta=1e30"]\n')
    results = "r_[/]x"
    args = ["run", "--preset", "tiny", "--executor", "local", "--results", results]
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 1 and "1 failed" in out and "drift:delta=1e+30" in out and "loss became nan" in out
    root = tmp_path / results / "t"
    assert f"{root}: 2 trained, 4 evaluated" in out and f"results: {root}" in err
    metrics = sorted(root.glob("runs/*/*/train-seed=0/*/eval/seed=*/metrics.json"))
    assert len(metrics) == 4
    m = json.loads(metrics[0].read_text())
    assert set(m["metrics"]) == {"acc[scorer]", "acc[expert]", "ssim", "fid[scorer]", "kid[scorer]", "precision[scorer]",
                                 "recall[scorer]", "density[scorer]", "coverage[scorer]", "tstr_acc", "aug_gain",
                                 "copy_rate"}
    assert m["provenance"]["fid[scorer]"]["n_gen"] == len(m["scored_classes"]) * 2  # tiny: 2 per class
    assert {"acc[scorer]", "acc[expert]"} <= set(m["reference"])  # each network's ceiling on real images
    assert all(prov["network"] for prov in m["provenance"].values())
    scorer, expert = (m["provenance"][f"acc[{net}]"] for net in ("scorer", "expert"))
    assert scorer["network"].startswith("scorer") and expert["network"].startswith("expert")
    assert len(scorer["weights_sha256"]) == 64 and scorer["weights_sha256"] != expert["weights_sha256"]
    assert m["provenance"]["fid[scorer]"]["weights_sha256"] == scorer["weights_sha256"]
    done = sorted(root.glob("runs/*/*/train-seed=0/*/" + DONE))
    assert all("loss" in read_curves(d.parent) for d in done)   # TensorBoard curves beside every trained run
    stamps = [p.stat().st_mtime_ns for p in metrics + done]

    code, out, err = run_cli(monkeypatch, capsys, *args)  # the same command again: nothing to do
    assert code == 1 and "nothing to do" in out
    assert stamps == [p.stat().st_mtime_ns for p in metrics + done]

    code, out, err = run_cli(monkeypatch, capsys, "report", "--results", results)
    assert code in (0, None), err
    assert f"report written to {results}/t/report" in out
    csv = (root / "report" / "leaderboard.csv").read_text().splitlines()
    assert csv[0].startswith("dataset,method,n,") and len(csv) >= 3
    assert {f"{m}_{s}" for m in ("tstr_acc", "aug_gain", "copy_rate") for s in ("mean", "ci_low", "ci_high")} <= set(
        csv[0].split(","))
    board = (root / "report" / "leaderboard.md").read_text()
    assert "drift:delta=0.1" in board and "loss became nan" in board


def test_a_scorer_identical_to_the_expert_is_refused(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bench.toml").write_text('[expert]\nbackbone = "resnet10t"\n'
                                         '[scorer]\nbackbone = "resnet10t"\nseed = 0\n')
    assert_refused(monkeypatch, capsys, "run", "--executor", "local", "--results", "results",
                   store=tmp_path / "results", says=("[scorer] in bench.toml", "is identical to [expert]",
                                                     "scorer.backbone"))


def test_reusing_a_run_on_data_with_other_classes_is_refused(monkeypatch, capsys, tmp_path):
    import numpy as np
    from PIL import Image
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / "tiles" / name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "tiles" / name / f"{i}.png")
    (tmp_path / "bench.toml").write_text('[suite]\nseeds = 1\n[data]\nexclude_classes = []\n'
                                         '[metrics]\nnames = ["ssim"]\n')
    args = ["run", "--preset", "tiny", "--executor", "local", "--results", "results", "--dataset", "folder:tiles"]
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    (tmp_path / "tiles" / "a").rename(tmp_path / "tiles" / "c")  # same config, other classes
    assert_refused(monkeypatch, capsys, *args, store=tmp_path / "results",
                   says=("do not match", "delete that run folder"))
