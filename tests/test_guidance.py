"""Classifier-free guidance as a suite setting ([train] p_uncond, [sample] guidance) reaching every
class-conditional method alike, and the U-Net's named condition path ([model] condition_path)."""
import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from bench.config import load_config
from bench.core.pixels import to_model_space
from bench.core.store import PLAN_FILE, atomic_write_json
from bench.engine.plan import run_id
from bench.engine.sample import generation_labels, sample_images
from bench.engine.tasks import expert_loader
from bench.engine.train import build
from bench.methods import Denoiser
from bench.report import build_report

CLASS_CONDITIONAL = ["baseline", "aligned", "drift", "ssl:simclr_steps=3"]
CPU = torch.device("cpu")


def with_cfg(cfg, p_uncond=None, guidance=None, condition_path=None):
    train = cfg.train if p_uncond is None else dataclasses.replace(cfg.train, p_uncond=p_uncond)
    sample = cfg.sample if guidance is None else dataclasses.replace(cfg.sample, guidance=guidance)
    model = cfg.model if condition_path is None else dataclasses.replace(cfg.model, condition_path=condition_path)
    return dataclasses.replace(cfg, train=train, sample=sample, model=model)


def built_for(cfg, data, tmp_path, variant):
    torch.manual_seed(0)
    cache = tmp_path / "cache"
    return build(cfg, variant, data, CPU, expert_loader(cfg, data, cache, CPU), cache)


def train_batch(data, n=24):
    index = np.linspace(0, len(data.train_y) - 1, n).astype(int)
    return (to_model_space(data.train_x[index]),
            torch.from_numpy(data.train_y[index]).long())


def null_rows(built, tokens):
    null = built.method.null_condition(built.model, 1)
    return (tokens == null).all(-1).squeeze(1)


@pytest.mark.parametrize("variant", CLASS_CONDITIONAL[:3])
@pytest.mark.parametrize("p_uncond", [0.0, 0.3])
def test_the_null_token_trains_exactly_when_p_uncond_is_positive(toy_data, tiny_config, tmp_path, variant, p_uncond):
    cfg = with_cfg(tiny_config, p_uncond=p_uncond, guidance=1.0)
    built = built_for(cfg, toy_data, tmp_path, variant)
    x0, labels = train_batch(toy_data)
    built.model.train()
    built.method.loss(built.model, built.schedule, x0, labels, torch.Generator().manual_seed(0))["loss"].backward()
    grad = built.model.modules_["class_embedding"].weight.grad
    assert grad[labels.unique()].abs().sum(1).gt(0).all()  # the class rows always train
    assert bool(grad[-1].abs().sum() > 0) == (p_uncond > 0)


@pytest.mark.parametrize("variant", CLASS_CONDITIONAL)
@pytest.mark.parametrize("p_uncond", [0.1, 0.3])
def test_label_dropout_draws_the_null_condition_at_the_stated_rate(toy_data, tiny_config, tmp_path, variant, p_uncond):
    built = built_for(with_cfg(tiny_config, p_uncond=p_uncond), toy_data, tmp_path, variant)
    x0, labels = train_batch(toy_data)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        cond = built.method.train_condition(built.model, x0, labels, g)
        assert not null_rows(built, cond).any()
        nulls = sum(int(null_rows(built, built.method.drop_condition(built.model, cond, g)).sum())
                    for _ in range(50))
    n = 50 * len(x0)
    assert abs(nulls - n * p_uncond) <= 4 * (n * p_uncond * (1 - p_uncond)) ** 0.5  # 4 binomial sd


class TokenEcho(nn.Module):
    """eps = 0.1 x + the tokens' mean: conditional and null predictions are known and differ."""

    config = SimpleNamespace(class_embed_type=None)  # cross-attention only: the tokens arrive unpooled

    def forward(self, x, t, encoder_hidden_states, **unused):
        return SimpleNamespace(sample=0.1 * x + encoder_hidden_states.mean((1, 2)).view(-1, 1, 1, 1))


@pytest.mark.parametrize("variant", CLASS_CONDITIONAL)
@pytest.mark.parametrize("g", [0.0, 2.0, 3.5])
def test_guidance_is_eps_u_plus_g_times_the_difference(toy_data, tiny_config, tmp_path, variant, g):
    built = built_for(with_cfg(tiny_config, guidance=g), toy_data, tmp_path, variant)
    method, model = built.method, Denoiser(TokenEcho(), dict(built.model.modules_), built.schedule)
    labels = torch.tensor([0, 1, 2, 1])
    xt, t = torch.randn(4, 3, 16, 16), torch.full((4,), 500)
    with torch.no_grad():
        cond = method.sample_condition(model, labels, torch.Generator().manual_seed(0))
        eps_c = method.denoise(model, xt, t, cond)
        eps_u = method.denoise(model, xt, t, method.null_condition(model, len(labels)))
        eps = method.sampling_denoise(model, xt, t, cond, labels)
    assert not torch.allclose(eps_c, eps_u)
    assert torch.allclose(eps, eps_u + g * (eps_c - eps_u), atol=1e-6)


def unet_conditions(built, run):
    """The condition tokens of every U-Net call made by `run()`."""
    seen = []
    handle = built.model.unet.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["encoder_hidden_states"].detach().clone()), with_kwargs=True)
    try:
        run()
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize("variant", CLASS_CONDITIONAL)
def test_guided_sampling_calls_the_null_condition_and_g_1_is_the_plain_conditional_call(
        toy_data, tiny_config, tmp_path, variant):
    labels = generation_labels(toy_data.scored_classes, 2)
    samples = {}
    for g in (1.0, 2.0):
        cfg = with_cfg(tiny_config, guidance=g)
        built = built_for(cfg, toy_data, tmp_path, variant)
        built.model.eval()
        calls = unet_conditions(built, lambda: samples.setdefault(g, sample_images(built, cfg, labels, 0, CPU)))
        assert len(calls) == cfg.sample.steps
        nulls = [null_rows(built, tokens) for tokens in calls]
        if g == 1:
            assert all(len(n) == len(labels) and not n.any() for n in nulls)
        else:  # conditional rows, then as many null rows, in one call per step
            assert all(len(n) == 2 * len(labels) and n[len(labels):].all() and not n[:len(labels)].any()
                       for n in nulls)
    assert not np.array_equal(samples[1.0], samples[2.0])
    # g = 1 is bit-identical to sampling through the bare conditional denoiser (the path before CFG)
    method = built.method
    method.sampling_denoise = lambda model, xt, t, cond, labels: method.denoise(model, xt, t, cond)
    assert np.array_equal(samples[1.0], sample_images(built, with_cfg(tiny_config, guidance=1.0), labels, 0, CPU))


def test_fgscore_guides_with_the_projection_as_its_condition(toy_data, tiny_config, tmp_path):
    """eps_u is the unmatched forward, eps_c the forward matched to the class centroids; in training a
    p_uncond fraction of rows is left unmatched, so eps_u is a trained denoiser."""
    labels = torch.tensor([0, 1, 2, 1])
    xt, t = torch.randn(4, 3, 16, 16), torch.full((4,), 500)
    for g in (1.0, 2.0):
        built = built_for(with_cfg(tiny_config, guidance=g), toy_data, tmp_path, "fgscore:n_refs=2,n_draws=1")
        method, model = built.method, built.model
        with torch.no_grad():
            eps_c = method.matched_denoise(model, xt, t, method.centroids(model, labels, t))
            eps_u = method.denoise(model, xt, t, method.null_condition(model, len(labels)))
            eps = method.sampling_denoise(model, xt, t, None, labels)
        assert not torch.allclose(eps_c, eps_u)
        assert torch.allclose(eps, eps_u + g * (eps_c - eps_u), atol=1e-5)
    unmatched = []
    method.matched_denoise = lambda model, xt, t, targets, rows=None: unmatched.append(rows) or xt
    x0, labels = train_batch(toy_data, 64)
    for p_uncond in (0.0, 0.25):
        method.ctx.p_uncond = p_uncond
        method.loss(model, built.schedule, x0, labels, torch.Generator().manual_seed(0))
    assert unmatched[0] is None and 0.1 < unmatched[1].float().mean() < 0.4


def unguided_fgscore():
    """fgscore as a plug-in that declares no condition to drop (not registered under a name of its own)."""
    from bench.methods.fgscore import FGScore
    return type("UnguidedFGScore", (FGScore,), {"classifier_free_guidance": False})


@pytest.mark.parametrize("path, time_embedding", [("attention+time", True), ("attention", False)])
def test_the_condition_path_is_a_named_model_option(toy_data, tiny_config, tmp_path, path, time_embedding):
    cfg = with_cfg(tiny_config, condition_path=path)
    built = built_for(cfg, toy_data, tmp_path, "baseline")
    assert (built.model.unet.class_embedding is not None) == time_embedding
    x0, labels = train_batch(toy_data, 8)
    loss = built.method.loss(built.model, built.schedule, x0, labels, torch.Generator().manual_seed(0))["loss"]
    assert torch.isfinite(loss)
    assert cfg.to_dict()["model"]["condition_path"] == path  # what config.json and plan.json record
    assert run_id(cfg, "baseline", 0) != run_id(with_cfg(tiny_config, condition_path="attention"
                                                         if time_embedding else "attention+time"), "baseline", 0)


def test_defaults_guide_with_the_ssl_authors_dropout():
    cfg = load_config(None)
    assert (cfg.train.p_uncond, cfg.model.condition_path) == (0.1, "attention+time") and cfg.sample.guidance > 1


def test_the_report_states_the_guidance_and_the_condition_path(tmp_path, monkeypatch):
    from test_report import make_store
    root = make_store(tmp_path)  # baseline, drift, aligned and fgscore
    plan = json.loads((root / PLAN_FILE).read_text())
    old = build_report(root)  # a store from before these settings existed
    assert "Classifier-free guidance: not recorded" in (old.report_dir / "leaderboard.md").read_text()
    plan["config"].update(model={"size": "small", "condition_path": "attention"}, train={"p_uncond": 0.25},
                          sample={**plan["config"]["sample"], "guidance": 1.5})
    atomic_write_json(root / PLAN_FILE, plan)
    report = build_report(root)
    for name in ("leaderboard.md", "report.html"):
        text = (report.report_dir / name).read_text().replace("\\_", "_")
        assert "p_uncond = 0.25, g = 1.5 for every class-conditional method." in text
        assert "the small U-Net, the condition entering through cross-attention only" in text
    from bench.methods import REGISTRY
    monkeypatch.setitem(REGISTRY, "fgscore", unguided_fgscore())
    text = (build_report(root).report_dir / "leaderboard.md").read_text().replace("\\_", "_")
    assert "g = 1.5 for every class-conditional method (not fgscore: no class condition" in text


def test_only_methods_that_guide_need_a_trained_null_condition(monkeypatch):
    """p_uncond = 0 with g = 2: refused for every built-in method, planned for a method without a
    condition to drop (its samples ignore the guidance scale)."""
    from bench.config import load_config
    from bench.core.errors import BenchError
    from bench.engine.plan import build_plan
    from bench.methods import REGISTRY
    tables = {"train": {"p_uncond": 0}, "sample": {"guidance": 2.0}}
    for method in ("baseline", "fgscore"):
        guided = load_config(None, "tiny", {**tables, "suite": {"methods": [method], "baseline": method}})
        with pytest.raises(BenchError, match="untrained null condition"):
            build_plan(guided)
    monkeypatch.setitem(REGISTRY, "fgscore", unguided_fgscore())
    unguided = load_config(None, "tiny", {**tables, "suite": {"methods": ["fgscore"], "baseline": "fgscore"}})
    assert [spec.variant for spec in build_plan(unguided)] == ["fgscore"]
