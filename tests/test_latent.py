"""Latent mode ([model] vae): a tiny random AutoencoderKL saved locally; methods diffuse its latents and
every metric scores the decoded images."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runner import assert_refused, run_cli
from diffusers import AutoencoderKL
from test_bad_input import RUN, toml
from tiny_vae import save_vae

from bench import cli
from bench.config import load_config
from bench.core.store import FEATURES_FILE, METRICS_FILE, SAMPLES_FILE, SuiteStore
from bench.datasets.base import PreparedData
from bench.engine.sample import generation_labels, sample_model_space, to_uint8
from bench.engine.tasks import classifier_loader, expert_loader
from bench.engine.train import build, load_model
from bench.metrics import classifiers_needed, evaluate_samples
from bench.core.pixels import to_model_space
from bench.models.latent import load_latents, prepare_latents, vae_folder
from bench.testing import tiny_config, toy_data

CPU = torch.device("cpu")
METHODS = ("baseline", "aligned", "ssl:simclr_steps=2", "fgscore:n_refs=2", "drift")


def edited(folder, **changes):
    """A VAE folder whose config.json holds values of other types (issue 34, item 2)."""
    config = json.loads((Path(folder) / "config.json").read_text())
    (Path(folder) / "config.json").write_text(json.dumps({**config, **changes}))
    return folder


def torn(folder: str) -> str:
    """`folder` with the second half of its weights file cut off."""
    weights = Path(folder) / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:weights.stat().st_size // 2])
    return folder


@pytest.fixture(scope="module")
def vae_path(tmp_path_factory):
    return save_vae(tmp_path_factory.mktemp("vae"))


@pytest.fixture(scope="module")
def suite(tmp_path_factory, vae_path):
    """`bench run --preset tiny` in latent mode with every built-in method, through the command line."""
    root = tmp_path_factory.mktemp("suite")
    (root / "bench.toml").write_text(f"[model]\nvae = {json.dumps(vae_path)}\n")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(root)
        monkeypatch.setattr(sys, "argv", ["bench", "run", "--preset", "tiny", "--executor", "local", "--seeds", "1",
                                          "--methods", ",".join(METHODS), "--results", "results"])
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
    assert exit_info.value.code == 0
    cfg = load_config(root / "bench.toml", "tiny", {"execution": {"executor": "local", "device": "cpu"}})
    store = SuiteStore.of(root / "results", cfg.suite.name, cfg.suite.eval_split)
    data_path = next(store.cache.glob("data-*.npz"))
    return cfg, store, data_path


def _eval_dir(store, method: str):
    [folder] = store.root.glob(f"runs/*/{method}/train-seed=0/*/eval/seed=0")
    return folder


def test_every_method_trains_on_latents_and_stores_images_at_the_data_sets_size(suite):
    cfg, store, data_path = suite
    for method in ("baseline", "aligned", "ssl@simclr_steps=2", "fgscore@n_refs=2", "drift"):
        folder = _eval_dir(store, method)
        assert (folder / METRICS_FILE).exists(), method
        images = np.load(folder / SAMPLES_FILE)["images"]
        assert images.shape == (7 * cfg.sample.samples_per_class, 16, 16, 3) and images.dtype == np.uint8, method
    # fgscore's features of the held-out images are computed on their latents, what its U-Net sees
    assert (_eval_dir(store, "fgscore@n_refs=2") / FEATURES_FILE).exists()


def test_samples_are_the_vae_decodes_of_the_sampled_latents(suite):
    cfg, store, data_path = suite
    data = PreparedData.load(data_path)
    latents = load_latents(cfg.model.vae, data_path, CPU)
    folder = _eval_dir(store, "baseline")
    built = load_model(cfg, "baseline", data, folder.parents[1], CPU, None, store.method_cache, latents)
    assert built.model.unet.config.in_channels == 4 and built.model.unet.config.sample_size == 8
    z = sample_model_space(built, cfg, generation_labels(data.scored_classes, cfg.sample.samples_per_class), 0, CPU)
    assert z.shape[1:] == (4, 8, 8)
    assert np.array_equal(to_uint8(latents.vae.decode(z)), np.load(folder / SAMPLES_FILE)["images"])


def test_metrics_are_those_of_the_stored_decoded_images(suite):
    cfg, store, data_path = suite
    data = PreparedData.load(data_path)
    folder = _eval_dir(store, "baseline")
    samples = np.load(folder / SAMPLES_FILE)
    real_x, real_y = data.split(cfg.suite.eval_split)
    scored = np.isin(real_y, data.scored_classes)
    classifiers = {role: classifier_loader(cfg, role, data, store.cache, CPU)()
                   for role in classifiers_needed(cfg.metrics.names)}
    again = evaluate_samples(samples["images"], samples["labels"], real_x[scored], real_y[scored],
                             class_names=data.class_names, scored_classes=data.scored_classes,
                             classifiers=classifiers, metrics=list(cfg.metrics.names), cache_dir=store.cache,
                             reference_key=f"{data.fingerprint()}-{cfg.suite.eval_split}",
                             kid_subset_size=cfg.metrics.kid_subset_size, device=CPU,
                             train_images=data.train_x, train_labels=data.train_y)
    assert again["metrics"] == json.loads((folder / METRICS_FILE).read_text())["metrics"]


def test_the_report_says_the_suite_diffused_in_latent_space(suite, monkeypatch, capsys):
    cfg, store, data_path = suite
    code, _, err = run_cli(monkeypatch, capsys, "report", "--results", str(store.root.parent), "--format", "md")
    assert code == 0, err
    text = " ".join((store.root / "report" / "leaderboard.md").read_text().split())
    assert f"in latent space (VAE {cfg.model.vae}; samples decoded before scoring)" in text


def test_latents_are_the_scaled_posterior_means_cached_once_per_data_set_and_vae(tmp_path, vae_path):
    data = toy_data()
    data_path = tmp_path / "data-toy.npz"
    data.save(data_path)
    path = prepare_latents(vae_path, data, data_path, CPU)
    stamp = path.stat().st_mtime_ns
    assert prepare_latents(vae_path, data, data_path, CPU) == path and path.stat().st_mtime_ns == stamp
    vae = AutoencoderKL.from_pretrained(vae_path)
    with torch.no_grad():
        mean = vae.encode(to_model_space(data.train_x)).latent_dist.mean
    cached = load_latents(vae_path, data_path, CPU)
    assert torch.allclose(cached.train, mean * vae.config.scaling_factor, atol=1e-6)
    assert len(cached.test) == len(data.test_x)
    other = prepare_latents(save_vae(tmp_path / "other", seed=1), data, data_path, CPU)
    assert other != path and other.exists()


def test_a_pipeline_folder_names_its_vae_subfolder(tmp_path):
    save_vae(tmp_path / "pipeline" / "vae")
    assert vae_folder(str(tmp_path / "pipeline")) == tmp_path / "pipeline" / "vae"


def test_aligned_shows_its_expert_the_decoded_x_t(tmp_path, vae_path):
    data = toy_data()
    data.save(tmp_path / "data-toy.npz")
    latents = load_latents(vae_path, tmp_path / "data-toy.npz", CPU)
    cfg = tiny_config()
    torch.manual_seed(0)
    built = build(cfg, "aligned", data, CPU, expert_loader(cfg, data, tmp_path / "cache", CPU), None, latents)
    expert, seen = built.method.ctx.expert(), []
    original = expert.features
    expert.features = lambda x: (seen.append(x.clone()), original(x))[1]
    z0, labels = latents.train[:4], torch.from_numpy(data.train_y[:4])
    built.method.loss(built.model, built.schedule, z0, labels, torch.Generator().manual_seed(0))
    expert.features = original
    xt = built.method.denoising_pass(built.model, built.schedule, z0, labels, torch.Generator().manual_seed(0)).xt
    assert seen[0].shape == (4, 3, 16, 16)
    assert torch.equal(seen[0], latents.vae.decode(xt))


@pytest.mark.parametrize("make, changes, fragment", [
    (lambda tmp: str(tmp), {}, "is not a local AutoencoderKL folder"),
    (lambda tmp: str(tmp / "missing"), {}, "missing does not exist; point it at a VAE saved with save_pretrained"),
    (lambda tmp: "acme/no-such-vae", {}, "model.vae 'acme/no-such-vae' is not in the local Hugging Face cache and bench "
     "does not download; fetch it once (huggingface-cli download acme/no-such-vae)"),
    (lambda tmp: save_vae(tmp / "v"), {"data": {"grayscale": True}},
     "encodes 3-channel images but the data have 1 channel(s); use a VAE for 1-channel images, or set "
     "data.grayscale = false"),
    (lambda tmp: save_vae(tmp / "v", blocks=3), {"data": {"image_size": 18}},
     "data.image_size = 18 is not a multiple of 4, the downsampling factor of model.vae"),
    (lambda tmp: save_vae(tmp / "v", safetensors=False), {},
     "has no diffusion_pytorch_model.safetensors; bench loads VAE weights from safetensors only"),
    (lambda tmp: torn(save_vae(tmp / "v")), {}, "does not load (Unable to load weights from checkpoint file"),
    (lambda tmp: edited(save_vae(tmp / "v"), latent_channels="four"), {},
     "v/config.json is not of the shape bench reads: latent_channels is 'four', not an integer"),
    (lambda tmp: edited(save_vae(tmp / "v"), block_out_channels=64), {}, "block_out_channels is an integer, not a list"),
])
def test_a_bad_vae_is_refused_before_anything_is_written(monkeypatch, capsys, tmp_path, make, changes, fragment):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    vae = make(inputs)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bench.toml").write_text(toml(**changes, model={"size": "tiny", "vae": vae}))
    assert_refused(monkeypatch, capsys, *RUN, store=tmp_path / "results", says=fragment)
