"""Latent drifting: delta = 0 is the baseline; the consistent reverse undoes the forward shift at every
level, so a model trained with delta samples the data's colours; literal mode's total shift is delta."""

import dataclasses

import numpy as np
import pytest
import torch
from toy_sets import colour_data, saturated_fraction, toy_config

from bench.diffusion import Sampler, Schedule
from bench.engine.sample import generation_labels, sample_images
from bench.engine.train import build, load_model, train_model
from bench.testing import MethodConformance

# Sample mean vs data mean, per channel, for a model trained on the toy set (toy_sets.toy_config): the
# baseline and drift land within about 3 grey levels there; a shift that accumulates over the 20 steps
# (the old sampler: + delta after each update) moves it by the whole grey range.
MEAN_TOLERANCE_GREY_LEVELS = 8


class TestDrift(MethodConformance):
    variant = "drift:delta=0.1"


class TestDriftPerChannelShifted(MethodConformance):
    variant = "drift:delta=0.1/0/-0.1,target=shifted"


class TestDriftLiteral(MethodConformance):
    variant = "drift:delta=0.1,reverse=literal"


def _built(cfg, data, variant):
    torch.manual_seed(0)
    built = build(cfg, variant, data, torch.device("cpu"))
    built.model.eval()
    return built


@pytest.mark.parametrize("variant", ["drift:delta=0.0", "drift:delta=0.0,target=shifted",
                                     "drift:delta=0.0,reverse=literal"])
def test_zero_delta_reproduces_the_baseline_sampler_exactly(toy_data, tiny_config, variant):
    labels = generation_labels(toy_data.scored_classes, 2)
    base = sample_images(_built(tiny_config, toy_data, "baseline"), tiny_config, labels, 0, torch.device("cpu"))
    drift = sample_images(_built(tiny_config, toy_data, variant), tiny_config, labels, 0, torch.device("cpu"))
    assert np.array_equal(base, drift)


@pytest.mark.parametrize("target", ["eps", "shifted"])
@pytest.mark.parametrize("sampler_name", ["ddim", "dpmsolver++", "unipc"])
def test_consistent_reverse_keeps_the_trajectory_on_the_forward_marginal(toy_data, tiny_config, target,
                                                                         sampler_name):
    """Given the noise estimate the forward process implies, drift's trajectory is the baseline's on the
    unshifted process plus s_prev delta after every update: the shift starts at s_T delta, shrinks with
    the noise level, never accumulates, and is gone at the end (both land on x0)."""
    base = _built(tiny_config, toy_data, "baseline").method
    drift = _built(tiny_config, toy_data, f"drift:delta=0.2/0/-0.1,target={target}").method
    delta = torch.tensor([0.2, 0.0, -0.1]).view(1, 3, 1, 1)
    samplers = [Sampler(Schedule(1000), sampler_name, steps=10, clip_x0=False) for _ in range(2)]
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.rand(2, 3, 8, 8, generator=g) * 2 - 1, torch.randn(2, 3, 8, 8, generator=g)
    y = Schedule(1000).add_noise(x0, eps, samplers[0].timesteps[:1].expand(2))
    x = y + samplers[1].noise_scales(0)[0] * delta
    for i in range(len(samplers[0])):
        y = base.step(samplers[0], y, eps, i, g)
        x = drift.step(samplers[1], x, eps + delta if target == "shifted" else eps, i, g)  # a perfect network
        assert torch.allclose(x - y, samplers[1].noise_scales(i)[1] * delta.expand_as(x), atol=1e-4), i
    assert torch.allclose(x, y, atol=1e-4) and torch.allclose(x, x0, atol=2e-3)


@pytest.mark.parametrize("steps", [5, 10, 20])
def test_literal_total_shift_is_delta_whatever_the_step_count(toy_data, tiny_config, steps):
    base = _built(tiny_config, toy_data, "baseline").method
    drift = _built(tiny_config, toy_data, "drift:delta=0.2/0/-0.1,reverse=literal").method
    sampler = Sampler(Schedule(1000), "ddim", steps=steps, eta=0.5)
    shape = (2, 3, 8, 8)
    g = torch.Generator().manual_seed(1)
    total = torch.zeros(shape)
    for i in range(len(sampler)):
        xt, eps = (torch.randn(shape, generator=g) for _ in range(2))
        total += (drift.step(sampler, xt, eps, i, torch.Generator().manual_seed(i))
                  - base.step(sampler, xt, eps, i, torch.Generator().manual_seed(i)))
    assert torch.allclose(total, torch.tensor([0.2, 0.0, -0.1]).view(1, 3, 1, 1).expand(shape), atol=1e-5)


def test_forward_process_draws_noise_from_n_delta(toy_data, tiny_config):
    schedule = Schedule(1000)
    x0, eps, t = torch.zeros(2, 3, 4, 4), torch.randn(2, 3, 4, 4), torch.tensor([999, 999])
    for target in ("eps", "shifted"):
        m = _built(tiny_config, toy_data, f"drift:delta=0.5,target={target}").method
        xt = m.add_noise(schedule, x0, eps, t)
        assert torch.allclose(xt, schedule.add_noise(x0, eps + 0.5, t))
        expected = eps + 0.5 if target == "shifted" else eps
        assert torch.equal(m.target(schedule, x0, eps, t), expected)
        z = m.initial_noise((2, 3, 4, 4), torch.Generator().manual_seed(1), "cpu")
        assert torch.allclose(z - torch.randn((2, 3, 4, 4), generator=torch.Generator().manual_seed(1)),
                              torch.full_like(z, 0.5))


def test_trained_with_delta_samples_keep_the_data_mean(tmp_path):
    data, cfg = colour_data(), toy_config()
    # unguided: guidance's extrapolation saturates pixels by itself, for the baseline alike (at g = 2,
    # 1.6% of the baseline's pixels); this is about the drift reverse not accumulating its shift
    cfg = dataclasses.replace(cfg, sample=dataclasses.replace(cfg.sample, guidance=1.0))
    variant = "drift:delta=0.1"
    train_model(cfg, variant, 0, data, tmp_path)
    built = load_model(cfg, variant, data, tmp_path, torch.device("cpu"))
    images = sample_images(built, cfg, generation_labels(data.scored_classes, 8), 0, torch.device("cpu"))
    error = images.reshape(-1, 3).mean(0) - data.train_x.reshape(-1, 3).mean(0)
    assert np.abs(error).max() < MEAN_TOLERANCE_GREY_LEVELS, error
    assert saturated_fraction(images) < 0.01
