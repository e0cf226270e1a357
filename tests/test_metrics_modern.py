"""fd[dinov2] and cmmd[clip] with tiny random DINOv2 and CLIP models saved locally (the real weights
cannot be had here), cross-checked against the reference formulas on the same features; missing
weights stop a suite before anything is written."""
import numpy as np
import pytest
import torch
from cli_runner import assert_refused
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric

from bench.metrics import evaluate_samples
from bench.metrics.extractors import build_extractor
from bench.metrics.modern_features import CLIP_ENV, DINOV2_ENV
from bench.models.pretrained import file_sha256
from bench.testing import toy_data


@pytest.fixture(scope="module")
def tiny_networks(tmp_path_factory):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection, Dinov2Config, Dinov2Model
    root = tmp_path_factory.mktemp("networks")
    torch.manual_seed(0)
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, patch_size=14)
    Dinov2Model(Dinov2Config(image_size=28, **small)).save_pretrained(root / "dinov2")
    CLIPVisionModelWithProjection(CLIPVisionConfig(image_size=28, projection_dim=16, **small)).save_pretrained(
        root / "clip")
    return root


@pytest.fixture
def networks(tiny_networks, monkeypatch):
    monkeypatch.setenv(DINOV2_ENV, str(tiny_networks / "dinov2"))
    monkeypatch.setenv(CLIP_ENV, str(tiny_networks / "clip"))
    return tiny_networks


def reference_cmmd(x: np.ndarray, y: np.ndarray) -> float:
    """The CMMD paper's estimator, written from its formula: 1000 x (mean k(x, x') + mean k(y, y') -
    2 mean k(x, y)), k(a, b) = exp(-||a - b||^2 / (2 * 10^2)), every pair of each set included."""
    def k(a, b):
        return np.exp(-((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) / (2 * 10.0**2))
    return 1000 * (k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())


def test_fd_dinov2_and_cmmd_clip_agree_with_the_reference_implementations(networks, tmp_path):
    data = toy_data()
    fake = np.clip(data.test_x.astype(int) + 40, 0, 255).astype(np.uint8)
    out = evaluate_samples(fake, data.test_y, data.test_x, data.test_y, class_names=data.class_names,
                           scored_classes=(0, 1, 2), classifiers={}, metrics=["fd[dinov2]", "cmmd[clip]"],
                           cache_dir=tmp_path, reference_key="toy-test")
    features = {}
    for name in ("dinov2", "clip"):   # the same features, computed again by the extractor
        extractor = build_extractor(name, classifiers={}, cache_dir=tmp_path)
        features[name] = extractor.features(fake), extractor.features(data.test_x)
    stats = [fid_features_to_statistics(torch.from_numpy(f)) for f in features["dinov2"]]
    expected_fd = float(fid_statistics_to_metric(*stats, verbose=False)[KEY_METRIC_FID])
    assert out["metrics"]["fd[dinov2]"] == pytest.approx(expected_fd, rel=1e-4) and expected_fd > 0
    expected_cmmd = reference_cmmd(*features["clip"])
    assert out["metrics"]["cmmd[clip]"] == pytest.approx(expected_cmmd, rel=1e-4) and expected_cmmd > 0
    assert np.allclose(np.linalg.norm(features["clip"][0], axis=1), 1)   # CMMD's embeddings are unit vectors
    for metric, folder in (("fd[dinov2]", "dinov2"), ("cmmd[clip]", "clip")):
        assert out["provenance"][metric]["weights_sha256"] == file_sha256(networks / folder / "model.safetensors")


def test_missing_weights_are_one_line_exit_2_and_nothing_written(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))   # the default id is in no cache here
    monkeypatch.delenv(DINOV2_ENV, raising=False)
    (tmp_path / "bench.toml").write_text('[metrics]\nnames = ["acc[scorer]", "fd[dinov2]"]\n')
    line = assert_refused(monkeypatch, capsys, "run", "--preset", "tiny", "--executor", "local", "--results", "results",
                          store=tmp_path / "results", says=("fd[dinov2]", DINOV2_ENV, "huggingface-cli download"))
    monkeypatch.setenv(CLIP_ENV, str(tmp_path / "no-such-folder"))
    (tmp_path / "bench.toml").write_text('[metrics]\nnames = ["cmmd[clip]"]\n')
    assert_refused(monkeypatch, capsys, "run", "--preset", "tiny", "--executor", "local", "--results", "results",
                   store=tmp_path / "results", says=("cmmd[clip]", "no-such-folder", "does not exist"))
    assert "Traceback" not in line
