"""The training/sampling loop on a tiny model: learning, resume, determinism, failure."""
import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from bench.core.errors import RunFailed
from bench.core.store import CHECKPOINT_FILE, FAILED, LOG_FILE, STATE_FILE, TRACEBACK, SuiteStore
from bench.diffusion import Schedule
from bench.engine.data import prepare_data
from bench.engine.plan import build_plan
from bench.engine.tasks import train_task
from bench.engine.sample import generation_labels, sample_images
from bench.engine.train import load_model, train_model


class Interrupt(Exception):
    pass


def test_resumed_training_is_bitwise_identical(toy_data, tiny_config, tmp_path):
    cfg = dataclasses.replace(tiny_config, train=dataclasses.replace(tiny_config.train, steps=6, checkpoint_every=2))
    straight, resumed = tmp_path / "a", tmp_path / "b"
    straight.mkdir(), resumed.mkdir()
    train_model(cfg, "baseline", 0, toy_data, straight)

    def crash_after_5(step, total):
        if step == 5:
            raise Interrupt
    with pytest.raises(Interrupt):
        train_model(cfg, "baseline", 0, toy_data, resumed, on_step=crash_after_5)
    assert (resumed / STATE_FILE).exists() and not (resumed / CHECKPOINT_FILE).exists()
    train_model(cfg, "baseline", 0, toy_data, resumed)
    a, b = load_file(straight / CHECKPOINT_FILE), load_file(resumed / CHECKPOINT_FILE)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (straight / LOG_FILE).read_text() .count("\n") == (resumed / LOG_FILE).read_text().count("\n") == 6
    assert not (resumed / STATE_FILE).exists()


def test_different_train_seeds_give_different_models(toy_data, tiny_config, tmp_path):
    for seed in (0, 1):
        (tmp_path / str(seed)).mkdir()
        train_model(tiny_config, "baseline", seed, toy_data, tmp_path / str(seed))
    a, b = load_file(tmp_path / "0" / CHECKPOINT_FILE), load_file(tmp_path / "1" / CHECKPOINT_FILE)
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_nan_loss_is_a_run_failure(toy_data, tiny_config, tmp_path):
    cfg = dataclasses.replace(tiny_config, train=dataclasses.replace(tiny_config.train, lr=1e30, grad_clip=0.0, steps=30))
    with pytest.raises(RunFailed, match="loss became"):
        train_model(cfg, "baseline", 0, toy_data, tmp_path)


def test_a_failed_run_keeps_its_traceback_beside_its_one_line_reason(tiny_config, tmp_path):
    cfg = dataclasses.replace(tiny_config, train=dataclasses.replace(tiny_config.train, lr=1e30, grad_clip=0.0, steps=30),
                              suite=dataclasses.replace(tiny_config.suite, methods=("baseline",)))
    spec = build_plan(cfg)[0]
    store = SuiteStore(tmp_path / "results", cfg.suite.name)
    assert train_task(cfg, spec, tmp_path / "results", prepare_data(cfg, store.cache))["status"] == "failed"
    run_dir = store.run_dir(spec.dataset, spec.variant, spec.train_seed, spec.run_id)
    reason, trace = (run_dir / FAILED).read_text(), (run_dir / TRACEBACK).read_text()
    assert reason.startswith("loss became") and reason.count("\n") == 1
    assert trace.startswith("Traceback (most recent call last):") and "in train_model" in trace
    assert trace.rstrip().endswith(f"RunFailed: {reason.strip()}")


def test_min_snr_weights_follow_the_formula():
    schedule = Schedule(1000, min_snr_gamma=5.0)
    t = torch.tensor([10, 500, 990])
    eps_hat, target = torch.ones(3, 1, 2, 2), torch.zeros(3, 1, 2, 2)
    abar = schedule.alphas_cumprod[t]
    snr = abar / (1 - abar)
    expected = (torch.clamp(snr, max=5.0) / snr).mean()
    assert torch.allclose(schedule.weighted_mse(eps_hat, target, t), expected)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_lr_warms_up_linearly_then_follows_its_schedule(tiny_config, schedule):
    from bench.engine.train import _lr_at
    cfg = dataclasses.replace(tiny_config, train=dataclasses.replace(
        tiny_config.train, lr=1e-3, warmup_steps=10, steps=110, lr_schedule=schedule))
    assert _lr_at(cfg, 0) == pytest.approx(1e-4) and _lr_at(cfg, 9) == pytest.approx(1e-3)
    after = [_lr_at(cfg, s) for s in (10, 60, 109)]
    if schedule == "constant":
        assert after == pytest.approx([1e-3] * 3)
    else:   # cosine: the peak right after warm-up, half of it midway, close to 0 at the end
        assert after[0] == pytest.approx(1e-3) and after[1] == pytest.approx(5e-4) and after[2] < 1e-6


@pytest.mark.parametrize("t", [torch.tensor([0, 250, 999]), torch.tensor([0.0, 250.0, 999.0])])
def test_v_prediction_gives_back_eps(t):
    """eps_hat = a_t v + s_t (x_t - mu) is eps exactly when the network predicts the true v (integer
    timesteps, and a sampler's float ones)."""
    schedule = Schedule(1000, "squaredcos_cap_v2", mean=(0.3, -0.2, 0.1), prediction="v")
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.rand(3, 3, 8, 8, generator=g) * 2 - 1, torch.randn(3, 3, 8, 8, generator=g)
    abar = schedule.alphas_cumprod[t.long()].view(-1, 1, 1, 1)
    v = abar.sqrt() * eps - (1 - abar).sqrt() * (x0 - schedule.mean)
    xt = schedule.add_noise(x0, eps, t.long())
    assert torch.allclose(schedule.eps_from_output(v, xt, t), eps, atol=1e-4)


def test_a_fractional_timestep_interpolates_sigma_between_its_neighbours():
    schedule = Schedule(1000, prediction="v")
    like = torch.zeros(1, 1, 1, 1)
    sigma = lambda abar: ((1 - abar) / abar).sqrt().flatten()  # noqa: E731
    lo, mid, hi = (sigma(schedule._abar_between(torch.tensor([x]), like)) for x in (400.0, 400.5, 401.0))
    assert torch.allclose(mid, (lo + hi) / 2) and lo < mid < hi


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_either_prediction_trains_and_samples(toy_data, tiny_config, tmp_path, prediction):
    cfg = dataclasses.replace(tiny_config, train=dataclasses.replace(tiny_config.train, prediction=prediction))
    train_model(cfg, "baseline", 0, toy_data, tmp_path)
    built = load_model(cfg, "baseline", toy_data, tmp_path, torch.device("cpu"))
    assert built.schedule.prediction == prediction
    images = sample_images(built, cfg, generation_labels(toy_data.scored_classes, 2), 0, torch.device("cpu"))
    assert images.std() > 0
