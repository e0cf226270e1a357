"""Nothing lost, nothing hidden: recorded failures are listed on every re-run, non-finite samples are
never scored, a torn train state costs a restart, not the run."""
import dataclasses
import logging

import pytest
import torch
from safetensors.torch import load_file
from test_cli import run_cli

from bench.config import load_config
from bench.core.store import (CHECKPOINT_FILE, DONE, FAILED, METRICS_FILE, SAMPLES_FILE, STATE_FILE, SuiteStore,
                              atomic_write_bytes)
from bench.engine.plan import build_plan
from bench.engine.train import train_model
from bench.methods import REGISTRY

EXPLODING_PLUGIN = '''
from bench.methods import ConditioningMethod


class Exploding(ConditioningMethod):
    """Trains like the baseline; its sampling denoiser is +-inf, as with `ssl:guidance=inf`. The
    sampler's x0 clipping keeps the images finite: all 0s and 255s."""

    name = "exploding"

    def sampling_denoise(self, model, xt, t, cond, labels):
        return super().sampling_denoise(model, xt, t, cond, labels) * float("inf")
'''


@pytest.fixture
def suite(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bench.toml").write_text('[suite]\nname = "t"\nseeds = 2\n[metrics]\nnames = ["ssim"]\n')
    yield ["run", "--preset", "tiny", "--executor", "local", "--results", "results"]
    REGISTRY.pop("exploding", None)


def test_failed_evaluations_are_listed_on_a_re_run_and_exit_1(monkeypatch, capsys, tmp_path, suite):
    cfg = load_config(tmp_path / "bench.toml", "tiny", {"execution": {"executor": "local"}})
    store = SuiteStore(tmp_path / "results", "t")
    (spec,) = build_plan(cfg)
    run_dir = store.run_dir(spec.dataset, spec.variant, spec.train_seed, spec.run_id)
    atomic_write_bytes(run_dir / DONE, b"")  # an earlier invocation trained it and evaluated seed 0,
    atomic_write_bytes(store.eval_dir(run_dir, 0) / METRICS_FILE, b"{}")
    atomic_write_bytes(store.eval_dir(run_dir, 1) / FAILED, b"RunFailed: samples went bad\n")  # not seed 1
    code, out, err = run_cli(monkeypatch, capsys, *suite)
    assert code == 1, (out, err)
    assert "1 failed" in out and "gen seed 1" in out and "samples went bad" in out
    retry = f"delete {store.eval_dir(run_dir, 1) / FAILED} to retry"
    assert "".join(retry.split()) in "".join(out.split())  # the console wraps and folds long lines
    code, out, err = run_cli(monkeypatch, capsys, *suite, "--methods", "baseline,drift")  # with new work too
    out = " ".join(out.split())  # the console wraps long lines
    assert code == 1 and "1 trained, 2 evaluated" in out and "1 failed" in out and "samples went bad" in out


def test_non_finite_samples_fail_the_evaluation_and_are_not_scored(monkeypatch, capsys, tmp_path, suite):
    (tmp_path / "exploding.py").write_text(EXPLODING_PLUGIN)
    code, out, err = run_cli(monkeypatch, capsys, *suite, "--plugin", "exploding.py",
                             "--methods", "baseline,exploding")
    assert code == 1, (out, err)
    out = " ".join(out.split())  # the console wraps long lines
    assert "exploding (train seed 0, gen seed 0): exploding went non-finite (NaN or inf) while sampling " \
           "generation seed 0; its samples are not scored: lower its guidance" in out
    root = tmp_path / "results" / "t"
    assert len(list(root.glob("runs/*/baseline/*/*/eval/seed=*/" + METRICS_FILE))) == 2
    exploding = list(root.glob("runs/*/exploding/*/*/eval/seed=*"))
    assert len(exploding) == 2 and all((d / FAILED).is_file() for d in exploding)
    assert not [p for d in exploding for p in d.iterdir() if p.name in (METRICS_FILE, SAMPLES_FILE)]


@pytest.mark.parametrize("bad_state", [b"", b"not a checkpoint", b"PK\x03\x04 torn zip"])
def test_a_corrupt_train_state_is_set_aside_and_training_restarts(toy_data, tiny_config, tmp_path, caplog,
                                                                   bad_state):
    cfg = dataclasses.replace(tiny_config, train=dataclasses.replace(tiny_config.train, steps=4))
    clean, torn = tmp_path / "clean", tmp_path / "torn"
    clean.mkdir(), torn.mkdir()
    train_model(cfg, "baseline", 0, toy_data, clean)
    (torn / STATE_FILE).write_bytes(bad_state)
    with caplog.at_level(logging.WARNING):
        train_model(cfg, "baseline", 0, toy_data, torn)
    (aside,) = torn.glob(f"{STATE_FILE}.corrupt-*")
    assert aside.read_bytes() == bad_state and not (torn / STATE_FILE).exists()
    (note,) = caplog.messages
    assert aside.name in note and "restarts from step 0" in note and "weights_only" not in note
    a, b = load_file(clean / CHECKPOINT_FILE), load_file(torn / CHECKPOINT_FILE)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # as if never interrupted
