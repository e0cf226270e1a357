"""fgscore: mean matching, both passes' gradients, same-class conditioners, class centroids, and
never the last decoder block."""
import numpy as np
import pytest
import torch

from bench.core.errors import BenchError
from bench.core.pixels import to_model_space
from bench.engine.train import augment, build
from bench.methods import parse_variant
from bench.models.unet_modules import resolve_module
from bench.methods.fgscore import FGScore, image_keys, layer_paths
from bench.testing import MethodConformance


class TestFGScore(MethodConformance):
    variant = "fgscore"


def _built(toy_data, tiny_config, variant="fgscore"):
    torch.manual_seed(0)
    return build(tiny_config, variant, toy_data, torch.device("cpu"))


def _train_batch(data, n=6):
    """n train images spread over every class (the split is sorted by class)."""
    index = torch.linspace(0, len(data.train_y) - 1, n).long().numpy()
    x0 = to_model_space(data.train_x[index])
    return x0, torch.from_numpy(data.train_y[index]), index


def _layer_outputs(method, model):
    """Records each selected layer's output after the method's own hook has replaced it."""
    seen = []
    for path in layer_paths(model.unet, method.params.layers):
        resolve_module(model.unet, path).register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    return seen


def test_default_layers_are_the_mid_block_and_every_decoder_block_but_the_last(toy_data, tiny_config):
    built = _built(toy_data, tiny_config)
    n_up = len(built.model.unet.up_blocks)
    assert layer_paths(built.model.unet, built.method.params.layers) == ["mid_block"] + [f"up_blocks.{i}" for i in range(n_up - 1)]
    last = built.model.unet.up_blocks[-1]
    assert not any(m._forward_hooks for m in last.modules())  # nothing in it is ever matched
    assert isinstance(built.method, FGScore) and len(built.model.modules_) == 0  # no class input


def test_the_last_decoder_block_is_refused(toy_data, tiny_config):
    for layers in ("up_blocks", "mid_block/up_blocks.-1", "up_blocks.-1.resnets.0"):
        with pytest.raises(BenchError, match="last decoder block"):
            parse_variant(f"fgscore:layers={layers}")
    n_up = len(_built(toy_data, tiny_config).model.unet.up_blocks)
    with pytest.raises(ValueError, match="last decoder block"):   # named by its index: refused on build
        _built(toy_data, tiny_config, f"fgscore:layers=mid_block/up_blocks.{n_up - 1}")


def test_training_and_sampling_match_the_same_layers(toy_data, tiny_config, monkeypatch):
    built = _built(toy_data, tiny_config)
    method, model = built.method, built.model
    matched = []
    original = FGScore._hook

    def recording_hook(self, index, module, inputs, output):
        if self._targets is not None:
            matched.append(index)
        return original(self, index, module, inputs, output)

    monkeypatch.setattr(FGScore, "_hook", recording_hook)
    method.prepare(model)   # hooks bound to the recording method
    x0, labels, _ = _train_batch(toy_data)
    method.loss(model, built.schedule, x0, labels, torch.Generator().manual_seed(0))
    at_training, matched[:] = sorted(set(matched)), []
    with torch.no_grad():
        method.sampling_denoise(model, x0, torch.full((len(x0),), 500), None, labels)
    assert at_training == sorted(set(matched)) == list(range(len(layer_paths(model.unet, method.params.layers))))


def test_matching_sets_each_layers_channel_means_to_the_target(toy_data, tiny_config):
    for variant in ("fgscore", "fgscore:match_std=true"):
        built = _built(toy_data, tiny_config, variant)
        method, model = built.method, built.model
        x0, labels, _ = _train_batch(toy_data)
        t = torch.full((len(x0),), 500)
        xt = built.schedule.add_noise(x0, torch.randn_like(x0), t)
        with torch.no_grad():
            plain = method.phi(model, xt, t)
            targets = [(torch.randn_like(m), torch.rand_like(s) + 0.5) for m, s in plain]
            seen = _layer_outputs(method, model)
            method.matched_denoise(model, xt, t, targets)
        assert len(seen) == len(targets)
        for out, (mean, std) in zip(seen, targets):
            assert torch.allclose(out.mean((2, 3)), mean, atol=1e-5)
            if "match_std" in variant:
                assert torch.allclose(out.std((2, 3), unbiased=False), std, atol=1e-3)


def test_matching_changes_the_prediction_and_plain_phi_leaves_it_alone(toy_data, tiny_config):
    built = _built(toy_data, tiny_config)
    method, model = built.method, built.model
    x0, _, _ = _train_batch(toy_data)
    t = torch.full((len(x0),), 300)
    xt = built.schedule.add_noise(x0, torch.randn_like(x0), t)
    with torch.no_grad():
        plain = method.denoise(model, xt, t, method.null_condition(model, len(xt)))
        own = method.matched_denoise(model, xt, t, method.phi(model, xt, t))
        other = method.matched_denoise(model, xt, t, method.phi(model, xt.flip(0), t))
    assert torch.allclose(plain, own, atol=1e-4)  # matching x_t to its own statistics is the identity
    assert not torch.allclose(plain, other, atol=1e-3)


def test_gradients_flow_through_both_passes(toy_data, tiny_config, monkeypatch):
    built = _built(toy_data, tiny_config)
    method, model = built.method, built.model
    recorded = []
    original = FGScore.phi

    def recording_phi(self, *args):
        stats = original(self, *args)
        recorded.extend(m for m, _ in stats)
        return stats

    monkeypatch.setattr(FGScore, "phi", recording_phi)
    x0, labels, _ = _train_batch(toy_data)
    loss = method.loss(model, built.schedule, x0, labels, torch.Generator().manual_seed(0))["loss"]
    assert recorded and all(m.requires_grad for m in recorded)  # pass 1 kept its graph
    # pass 2 depends on pass 1's features, so the loss's gradient reaches pass 1
    grads = torch.autograd.grad(loss, recorded, retain_graph=True)
    assert all(g.abs().sum() > 0 for g in grads)
    loss.backward()
    for path in ("mid_block", "up_blocks.0"):
        params = list(resolve_module(model.unet, path).parameters())
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params), path


def test_conditioner_is_another_image_of_the_same_class(toy_data, tiny_config):
    built = _built(toy_data, tiny_config)
    method = built.method
    x_all, _, _ = method.train_set()
    x0, labels, own = _train_batch(toy_data, 12)
    g = torch.Generator().manual_seed(1)
    for _ in range(30):
        x0_aug = augment(x0, g)  # rotated/flipped copies must still count as the same image
        cond = method.conditioners(x0_aug, labels, g)
        index = [(x_all == c).flatten(1).all(1).nonzero().item() for c in cond]
        assert torch.equal(torch.from_numpy(toy_data.train_y[index]), labels)
        assert all(i != j for i, j in zip(index, own))


def test_image_keys_are_dihedral_invariant_and_tell_images_apart(toy_data):
    x0, _, _ = _train_batch(toy_data, 8)
    keys = image_keys(x0)
    assert len(set(keys.tolist())) == len(x0)
    for k in range(4):
        assert torch.equal(image_keys(torch.rot90(x0, k, (2, 3)).flip(3)), keys)


def test_centroids_average_every_reference_over_several_noise_draws(toy_data, tiny_config):
    built = _built(toy_data, tiny_config, "fgscore:n_draws=3")
    method, model = built.method, built.model
    x, y = method.references()
    assert len(x) == min(64, 8) * 3 and set(y.tolist()) == {0, 1, 2}  # 64 per class, all of a smaller one
    t = 200
    with torch.no_grad():
        per_draw = []
        for draw in range(3):
            tt = torch.full((len(x),), t)
            means = method.phi(model, built.schedule.add_noise(x, method.reference_noise(x, t, draw), tt), tt)
            per_draw.append([torch.stack([m[y == c].mean(0) for c in range(3)]) for m, _ in means])
        cents = method.class_centroids(model, t)
    for layer, (mean, _) in enumerate(cents):
        expected = torch.stack([d[layer] for d in per_draw]).mean(0)
        assert torch.allclose(mean, expected, atol=1e-5)
    assert not torch.allclose(per_draw[0][0], per_draw[1][0])  # the draws differ


def test_centroids_differ_per_class_are_cached_per_noise_level(toy_data, tiny_config, monkeypatch):
    built = _built(toy_data, tiny_config, "fgscore:conditioner=noisy")
    method, model = built.method, built.model
    labels = torch.tensor([0, 1, 2, 0])
    t = torch.full((4,), 200)
    with torch.no_grad():
        cents = method.centroids(model, labels, t)
        calls = []
        monkeypatch.setattr(FGScore, "phi", lambda *a: calls.append(1))
        again = method.centroids(model, torch.tensor([0]), t[:1])
        assert not calls                                   # cached: no forward pass for a known t
        monkeypatch.undo()
        later = method.centroids(model, labels, torch.full((4,), 900))
    mean = cents[0][0]
    assert torch.equal(mean[0], mean[3])
    assert not torch.allclose(mean[0], mean[1]) and not torch.allclose(mean[1], mean[2])
    assert torch.equal(again[0][0][0], mean[0])  # batch composition does not move it
    assert not torch.allclose(later[0][0][0], mean[0])


@pytest.mark.parametrize("conditioner", ["noisy", "clean"])
def test_the_conditioner_is_noised_to_the_inputs_level_or_taken_clean(toy_data, tiny_config, monkeypatch,
                                                                     conditioner):
    built = _built(toy_data, tiny_config, f"fgscore:conditioner={conditioner}")
    method, model = built.method, built.model
    levels = []
    original = FGScore.phi
    monkeypatch.setattr(FGScore, "phi", lambda self, model, xt, t: levels.append(t.clone()) or original(self, model, xt, t))
    x0, labels, _ = _train_batch(toy_data)
    t = torch.tensor([10, 300, 600, 999, 500, 700])
    monkeypatch.setattr(built.schedule, "sample_timesteps", lambda n, generator, device: t)
    method.loss(model, built.schedule, x0, labels, torch.Generator().manual_seed(0))
    assert torch.equal(levels[0], t if conditioner == "noisy" else torch.zeros_like(t))
    monkeypatch.undo()
    with torch.no_grad():
        early, late = (method.centroids(model, labels[:3], torch.full((3,), level)) for level in (100, 900))
        at = method.class_centroids(model, 100 if conditioner == "noisy" else 0)
    assert torch.equal(early[0][0], at[0][0][labels[:3]])
    assert torch.equal(early[0][0], late[0][0]) == (conditioner == "clean")  # clean: one centroid for every t


def test_centroids_are_shared_through_the_cache_by_evaluations_of_the_same_weights(toy_data, tiny_config,
                                                                                  tmp_path, monkeypatch):
    def built(seed):
        torch.manual_seed(seed)
        return build(tiny_config, "fgscore", toy_data, torch.device("cpu"), cache_dir=tmp_path)

    with torch.no_grad():
        first = built(0)
        computed = first.method.class_centroids(first.model, 300)
        second = built(0)                                  # another evaluation task of the same model
        monkeypatch.setattr(FGScore, "phi", lambda *a: pytest.fail("recomputed"))
        shared = second.method.class_centroids(second.model, 300)
        monkeypatch.undo()
        other = built(1)                                   # other weights: their own centroids
        theirs = other.method.class_centroids(other.model, 300)
    assert all(torch.equal(a, b) for pa, pb in zip(computed, shared) for a, b in zip(pa, pb))
    assert not torch.allclose(theirs[0][0], computed[0][0])
    assert len(list(tmp_path.glob("fgscore-centroids/*/t0300.safetensors"))) == 2


def test_features_have_one_row_per_image_and_the_documented_width(toy_data, tiny_config):
    built = _built(toy_data, tiny_config)
    method, model = built.method, built.model
    x0, _, _ = _train_batch(toy_data, 5)
    phi = method.features(model, x0, 100)
    width = sum(m.shape[1] for m, _ in method.phi(model, x0, torch.zeros(5, dtype=torch.long)))
    assert phi.shape == (5, width) and torch.isfinite(phi).all()
    assert torch.equal(phi, method.features(model, x0, 100))


def test_evaluation_stores_phi_of_real_images_and_the_report_shows_its_clustering(monkeypatch, capsys, tmp_path):
    from test_cli import run_cli
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bench.toml").write_text('[suite]\nname = "f"\nseeds = 2\n'
                                         'methods = ["baseline", "fgscore:n_refs=4,n_draws=1"]\n'
                                         '[metrics]\nnames = ["ssim"]\n')
    code, out, err = run_cli(monkeypatch, capsys, "run", "--preset", "tiny", "--executor", "local",
                             "--results", "results")
    assert code in (0, None), out + err
    root = tmp_path / "results" / "f"
    (stored,) = root.glob("runs/**/features.npz")          # fgscore only, once per trained model
    assert stored.parent.name == "seed=0" and "fgscore" in stored.relative_to(root).parts[2]
    with np.load(stored) as z:
        phi, labels, levels, accuracy = z["phi"], z["labels"], z["t"], z["accuracy"]
    assert phi.shape[:2] == (4, len(labels)) and levels.tolist() == [0, 100, 500, 899]
    assert np.isfinite(phi).all() and ((0 <= accuracy) & (accuracy <= 1)).all()
    code, out, err = run_cli(monkeypatch, capsys, "report", "--results", "results")
    html = (root / "report" / "report.html").read_text()
    assert "nearest-centroid accuracy" in html and f"{accuracy[0]:.3f}" in html
    assert (root / "report" / "figures" / "synth-tissue_phi_pca.png").is_file()
