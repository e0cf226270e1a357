"""Feature-aligned diffusion: the alignment gradient, the frozen expert, what the expert sees."""
import dataclasses

import torch

from bench.core.pixels import to_model_space
from bench.engine.tasks import expert_loader
from bench.engine.train import build, train_model
from bench.testing import MethodConformance


class TestAligned(MethodConformance):
    variant = "aligned"


class TestAlignedClean(MethodConformance):
    variant = "aligned-clean:w2=0.5"


def _setup(toy_data, tiny_config, tmp_path, variant):
    load = expert_loader(tiny_config, toy_data, tmp_path / "cache", torch.device("cpu"))
    torch.manual_seed(0)
    return build(tiny_config, variant, toy_data, torch.device("cpu"), load, tmp_path / "cache"), load


def _batch(data, n=4):
    x0 = to_model_space(data.train_x[:n])
    return x0, torch.from_numpy(data.train_y[:n])


def test_alignment_gradient_reaches_the_projection_and_the_down_path(toy_data, tiny_config, tmp_path):
    built, _ = _setup(toy_data, tiny_config, tmp_path, "aligned:w1=0.0")
    x0, labels = _batch(toy_data)
    terms = built.method.loss(built.model, built.schedule, x0, labels, torch.Generator().manual_seed(0))
    assert terms["loss_align"] > 0
    terms["loss"].backward()  # w1 = 0: every gradient comes from the alignment term
    proj = built.model.modules_["projection"].weight.grad
    assert proj is not None and proj.abs().sum() > 0
    down = [p.grad for p in built.model.unet.down_blocks.parameters() if p.grad is not None]
    assert down and sum(g.abs().sum() for g in down) > 0
    up = [p.grad for p in built.model.unet.up_blocks.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert not up  # the up path lies after the hook point


def test_expert_weights_and_batchnorm_statistics_are_unchanged_by_training(toy_data, tiny_config, tmp_path):
    load = expert_loader(tiny_config, toy_data, tmp_path / "cache", torch.device("cpu"))
    before = {k: v.clone() for k, v in load().state_dict().items()}
    cfg = dataclasses.replace(tiny_config, train=dataclasses.replace(tiny_config.train, steps=3))
    (tmp_path / "run").mkdir()
    expert = load()
    train_model(cfg, "aligned", 0, toy_data, tmp_path / "run", lambda: expert, tmp_path / "cache")
    after = expert.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)  # incl. BN running stats
    assert not expert.training


def test_aligned_feeds_the_expert_x_t_and_aligned_clean_feeds_x0(toy_data, tiny_config, tmp_path):
    x0, labels = _batch(toy_data)
    for variant, expect_clean in (("aligned", False), ("aligned-clean", True)):
        built, load = _setup(toy_data, tiny_config, tmp_path, variant)
        expert = built.method.ctx.expert()
        seen = []
        original = expert.features
        expert.features = lambda x: (seen.append(x.clone()), original(x))[1]
        built.method.loss(built.model, built.schedule, x0, labels, torch.Generator().manual_seed(0))
        expert.features = original
        assert len(seen) == 1
        assert torch.equal(seen[0], x0) == expect_clean
