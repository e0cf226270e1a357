"""One conformance class every method's test inherits (the pattern of diffusers' SchedulerCommonTest).

A subclass sets `variant`; the checks run it like every built-in method: a tiny U-Net, a few CPU
steps, a fixed seed.
"""
import numpy as np
import pytest
import torch

from bench.sample import generation_labels, sample_images
from bench.tasks import expert_loader
from bench.train import build, load_model, train_model


class MethodConformance:
    variant: str = ""

    @pytest.fixture
    def setup(self, toy_data, tiny_config, tmp_path):
        load_expert = expert_loader(tiny_config, toy_data, tmp_path / "cache", torch.device("cpu"))
        return toy_data, tiny_config, tmp_path, load_expert

    def _build(self, setup):
        data, cfg, tmp, load_expert = setup
        torch.manual_seed(0)
        return build(cfg, self.variant, data, torch.device("cpu"), load_expert, tmp / "cache")

    def test_loss_finite_and_falls_on_a_fixed_batch(self, setup):
        data, cfg, *_ = setup
        built = self._build(setup)
        x0 = torch.from_numpy(data.train_x[:8]).permute(0, 3, 1, 2).float() / 127.5 - 1
        labels = torch.from_numpy(data.train_y[:8])
        params = [p for p in built.model.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=2e-3)
        losses = []
        for _ in range(25):
            terms = built.method.loss(built.model, built.schedule, x0, labels, torch.Generator().manual_seed(0))
            assert "loss" in terms and all(torch.isfinite(v) for v in terms.values())
            opt.zero_grad()
            terms["loss"].backward()
            opt.step()
            losses.append(terms["loss"].item())
        assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:3]), losses

    def test_samples_have_the_right_shape_and_range(self, setup):
        data, cfg, *_ = setup
        built = self._build(setup)
        built.model.eval()
        labels = generation_labels(data.scored_classes, 2)
        images = sample_images(built, cfg, labels, gen_seed=0, device=torch.device("cpu"))
        assert images.dtype == np.uint8
        assert images.shape == (len(labels), data.image_size, data.image_size, data.channels)
        assert images.std() > 0

    def test_same_seed_gives_identical_samples(self, setup):
        data, cfg, *_ = setup
        built = self._build(setup)
        built.model.eval()
        labels = generation_labels(data.scored_classes, 2)
        a = sample_images(built, cfg, labels, 3, torch.device("cpu"))
        b = sample_images(built, cfg, labels, 3, torch.device("cpu"))
        c = sample_images(built, cfg, labels, 4, torch.device("cpu"))
        assert np.array_equal(a, b)
        assert not np.array_equal(a, c)

    def test_checkpoint_round_trip(self, setup):
        data, cfg, tmp, load_expert = setup
        run_dir = tmp / "run"
        run_dir.mkdir()
        train_model(cfg, self.variant, 0, data, run_dir, load_expert, tmp / "cache")
        first = load_model(cfg, self.variant, data, run_dir, torch.device("cpu"), load_expert, tmp / "cache")
        second = load_model(cfg, self.variant, data, run_dir, torch.device("cpu"), load_expert, tmp / "cache")
        for (k, v), (k2, v2) in zip(first.model.state_dict().items(), second.model.state_dict().items()):
            assert k == k2 and torch.equal(v, v2)
        labels = generation_labels(data.scored_classes, 2)
        assert np.array_equal(sample_images(first, cfg, labels, 1, torch.device("cpu")),
                              sample_images(second, cfg, labels, 1, torch.device("cpu")))
