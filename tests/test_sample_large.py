"""`bench sample-large`: a finished tiny ssl run paints a 2 x 2-tile image beside a real one, scores both,
resumes; bad input is one line, exit 2, nothing written."""
import json

import numpy as np
import pytest
from cli_runner import assert_refused, run_cli, snapshot
from test_export import finished_suite, run_dir

from bench.core.store import LARGE_FIGURE_FILE, LARGE_IMAGES_FILE, PATCH_METRICS_FILE, SEAMS_FILE

SSL = "ssl:simclr_steps=3"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return finished_suite(tmp_path_factory.mktemp("store") / "results", ("baseline", SSL))


def test_a_large_image_is_sampled_scored_and_resumed(monkeypatch, capsys, store):
    run = run_dir(store, SSL)
    args = ("sample-large", str(run), "--k", "2", "--stride", "8", "--executor", "local")
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code in (0, None), err
    folder = run / "large" / "k=2+stride=8+slerp"
    seed = folder / "seed=0"
    images = np.load(seed / LARGE_IMAGES_FILE)
    assert images["generated"].shape == images["real"].shape == (32, 32, 3)
    assert images["generated"].dtype == np.uint8 and images["generated"].std() > 0
    assert (seed / LARGE_FIGURE_FILE).read_bytes()[:4] == b"\x89PNG"
    seams = json.loads((seed / SEAMS_FILE).read_text())
    assert seams["window_stride_px"] == 8 and seams["provenance"]["period_px"] == 16
    scores = json.loads((folder / PATCH_METRICS_FILE).read_text())
    assert set(scores["metrics"]) == {"patch_fid[scorer]", "patch_kid[scorer]"}
    assert scores["provenance"]["n_gen"] == scores["provenance"]["n_ref"] == 9    # (2 k - 1)^2 crops
    assert "patch_fid[scorer] = " in out and "seam score, generated:" in out
    before = snapshot(folder)
    code, _, err = run_cli(monkeypatch, capsys, *args)                         # resumes: nothing recomputed
    assert code in (0, None), err
    assert snapshot(folder) == before


def test_the_report_shows_the_large_image_beside_the_real_one(monkeypatch, capsys, store):
    code, _, err = run_cli(monkeypatch, capsys, "sample-large", str(run_dir(store, SSL)), "--k", "2", "--executor",
                           "local")
    assert code in (0, None), err
    code, _, err = run_cli(monkeypatch, capsys, "report", "--results", str(store.parent), "--format", "md")
    assert code in (0, None), err
    figure = store / "report" / "figures" / "synth-tissue_large.png"
    assert figure.read_bytes()[:4] == b"\x89PNG"
    assert "synth-tissue_large.png" in (store / "report" / "leaderboard.md").read_text()


@pytest.mark.parametrize("args, says", [
    (("--k", "0"), "k must be a whole number >= 1"),
    (("--stride", "17"), "stride 17 exceeds the 16-px window"),
    (("--interpolation", "cubic"), "interpolation must be slerp or lerp"),
    (("--seeds", "0"), "give at least 1 large image"),
])
def test_bad_settings_are_refused(monkeypatch, capsys, store, args, says):
    assert_refused(monkeypatch, capsys, "sample-large", str(run_dir(store, SSL)), *args, "--executor", "local",
                   store=store, says=says)


def test_a_method_without_a_spatial_condition_is_refused(monkeypatch, capsys, store):
    assert_refused(monkeypatch, capsys, "sample-large", str(run_dir(store, "baseline")), "--executor", "local",
                   store=store, says="method baseline cannot condition on a spatial grid of embeddings")
