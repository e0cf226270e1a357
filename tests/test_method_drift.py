"""Latent drifting: delta = 0 is the baseline; delta != 0 shifts the noise mean and every step."""
import numpy as np
import torch

from bench.diffusion import Sampler, Schedule
from bench.sample import generation_labels, sample_images
from bench.testing import MethodConformance
from bench.train import build


class TestDrift(MethodConformance):
    variant = "drift:delta=0.1"


class TestDriftPerChannelShifted(MethodConformance):
    variant = "drift:delta=0.1/0/-0.1,target=shifted"


def _built(cfg, data, variant):
    torch.manual_seed(0)
    built = build(cfg, variant, data, torch.device("cpu"))
    built.model.eval()
    return built


def test_zero_delta_reproduces_the_baseline_sampler_exactly(toy_data, tiny_config):
    labels = generation_labels(toy_data.scored_classes, 2)
    base = sample_images(_built(tiny_config, toy_data, "baseline"), tiny_config, labels, 0, torch.device("cpu"))
    drift = sample_images(_built(tiny_config, toy_data, "drift:delta=0.0"), tiny_config, labels, 0, torch.device("cpu"))
    assert np.array_equal(base, drift)


def test_delta_shifts_the_initial_noise_and_every_step(toy_data, tiny_config):
    base = _built(tiny_config, toy_data, "baseline").method
    drift = _built(tiny_config, toy_data, "drift:delta=0.2/0/-0.1").method
    delta = torch.tensor([0.2, 0.0, -0.1]).view(1, 3, 1, 1)
    shape = (4, 3, 8, 8)
    z_base = base.initial_noise(shape, torch.Generator().manual_seed(1), "cpu")
    z_drift = drift.initial_noise(shape, torch.Generator().manual_seed(1), "cpu")
    assert torch.allclose(z_drift - z_base, delta.expand(shape))
    sampler = Sampler(Schedule(1000), steps=10, eta=0.5)
    xt, eps, noise = torch.randn(shape), torch.randn(shape), torch.randn(shape)
    for i in range(len(sampler)):
        assert torch.allclose(drift.step(sampler, xt, eps, i, noise) - base.step(sampler, xt, eps, i, noise),
                              delta.expand(shape), atol=1e-6)


def test_forward_process_draws_noise_from_n_delta(toy_data, tiny_config):
    schedule = Schedule(1000)
    x0, eps, t = torch.zeros(2, 3, 4, 4), torch.randn(2, 3, 4, 4), torch.tensor([999, 999])
    for target in ("eps", "shifted"):
        m = _built(tiny_config, toy_data, f"drift:delta=0.5,target={target}").method
        xt = m.add_noise(schedule, x0, eps, t)
        assert torch.allclose(xt, schedule.add_noise(x0, eps + 0.5, t))
        expected = eps + 0.5 if target == "shifted" else eps
        assert torch.equal(m.target(schedule, x0, eps, t), expected)
