"""ssl: class-faithful bank draws, frozen encoders (its guidance is the suite's: tests/test_guidance.py)."""

import numpy as np
import pytest
import torch

from bench.core.errors import BenchError
from bench.core.pixels import to_model_space
from bench.engine.tasks import expert_loader
from bench.engine.train import build
from bench.methods.ssl import SSLParams
from bench.models.encoders import EncoderSpec, load_encoder
from bench.testing import MethodConformance

FAST = "ssl:simclr_steps=3"  # the default encoder (SimCLR), trained in well under a second


class TestSSL(MethodConformance):
    variant = FAST


def test_the_default_encoder_is_one_no_metric_uses():
    assert SSLParams().encoder == "simclr"


def _built(toy_data, tiny_config, tmp_path, variant=FAST):
    torch.manual_seed(0)
    cpu, cache = torch.device("cpu"), tmp_path / "cache"
    return build(tiny_config, variant, toy_data, cpu, expert_loader(tiny_config, toy_data, cache, cpu), cache)


def _images(data, n=12):
    index = np.linspace(0, len(data.train_y) - 1, n).astype(int)
    return to_model_space(data.train_x[index]), \
        torch.from_numpy(data.train_y[index])


def test_bank_draws_come_from_the_target_class_and_cover_it(toy_data, tiny_config, tmp_path):
    method = _built(toy_data, tiny_config, tmp_path).method
    z, y = method.bank()
    assert len(z) == len(toy_data.train_y) and torch.equal(y, torch.from_numpy(toy_data.train_y))
    labels = torch.tensor([0, 1, 2] * 100)
    drawn = method.draw_embeddings(labels, torch.Generator().manual_seed(0))
    source = [int((z == d).all(1).nonzero()[0]) for d in drawn]  # every draw is a bank row
    assert torch.equal(y[source], labels)
    for c in range(3):  # uniform over the class: 100 draws of 8 members reach all
        assert {s for s, lab in zip(source, labels) if lab == c} == set((y == c).nonzero().squeeze(1).tolist())


def test_gaussian_bank_draws_centre_on_their_class(toy_data, tiny_config, tmp_path):
    method = _built(toy_data, tiny_config, tmp_path, f"{FAST},bank=gaussian").method
    z, y = method.bank()
    unit = torch.nn.functional.normalize(z, dim=1)
    means = torch.stack([unit[y == c].mean(0) for c in range(3)])
    labels = torch.tensor([0, 1, 2] * 200)
    drawn = method.draw_embeddings(labels, torch.Generator().manual_seed(0))
    for c in range(3):
        sample_mean = drawn[labels == c].mean(0)
        assert torch.cdist(sample_mean[None], means).argmin() == c
        assert (sample_mean - means[c]).norm() < 0.25 * (means[c] - means[(c + 1) % 3]).norm()
    assert not any((z == d).all(1).any() for d in drawn[:10])  # fresh draws, not bank rows


@pytest.mark.parametrize("variant", [FAST, "ssl:encoder=expert", "ssl:encoder=effnet,input_size=32"])
def test_encoder_stays_frozen_through_training(toy_data, tiny_config, tmp_path, variant):
    built = _built(toy_data, tiny_config, tmp_path, variant)
    method, model = built.method, built.model
    encoder = method.encoder
    before = {k: v.clone() for k, v in encoder.state_dict().items()}  # weights and BatchNorm statistics
    assert not {id(p) for p in encoder.parameters()} & {id(p) for p in model.parameters()}
    assert not any(k.startswith("encoder") for k in model.state_dict())  # not checkpointed
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x0, labels = _images(toy_data, 8)
    for step in range(3):
        loss = method.loss(model, built.schedule, x0, labels, torch.Generator().manual_seed(step))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not encoder.training
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())
    assert model.modules_["projection"].weight.grad is not None  # while W does train


def test_simclr_encoder_is_cached_by_data_and_reloads_identically(toy_data, tmp_path):
    spec = EncoderSpec("simclr", simclr_steps=3)
    first = load_encoder(spec, toy_data, torch.device("cpu"), tmp_path)
    assert len(list((tmp_path / "encoders").glob("simclr-*.safetensors"))) == 1
    second = load_encoder(spec, toy_data, torch.device("cpu"), tmp_path)
    x, _ = _images(toy_data)
    assert torch.equal(first(x), second(x)) and first(x).shape == (len(x), first.dim)


def test_effnet_encoder_loads_the_shipped_weights(toy_data):
    encoder = load_encoder(EncoderSpec("effnet", input_size=32), toy_data, torch.device("cpu"))
    x, _ = _images(toy_data, 4)
    z = encoder(x)
    assert z.shape == (4, 1280) and torch.isfinite(z).all() and not encoder.training
    assert not any(p.requires_grad for p in encoder.parameters())
    gray = encoder(x.mean(1, keepdim=True))  # grayscale data enters an RGB network
    assert gray.shape == (4, 1280)


def test_timm_encoder_reads_local_weights(toy_data, tmp_path):
    import timm
    from safetensors.torch import save_file
    reference = timm.create_model("test_resnet", pretrained=False, num_classes=0).eval()
    save_file(reference.state_dict(), str(tmp_path / "w.safetensors"))
    encoder = load_encoder(EncoderSpec("timm:test_resnet", weights=str(tmp_path / "w.safetensors"), input_size=32),
                           toy_data, torch.device("cpu"))
    assert all(torch.equal(encoder.backbone.state_dict()[k], v) for k, v in reference.state_dict().items())
    assert encoder(_images(toy_data, 2)[0]).shape == (2, reference.num_features)


@pytest.mark.parametrize("name", ["timm:resnet18", "open_clip:ViT-B-32"])
def test_missing_local_weights_name_the_parameter(toy_data, tmp_path, name):
    with pytest.raises(BenchError, match="weights"):
        load_encoder(EncoderSpec(name), toy_data, torch.device("cpu"))
    with pytest.raises(BenchError, match="not found"):
        load_encoder(EncoderSpec(name, weights=str(tmp_path / "absent.pt")), toy_data, torch.device("cpu"))


def test_unknown_encoder_is_a_user_error(toy_data):
    with pytest.raises(BenchError, match="unknown ssl encoder"):
        load_encoder(EncoderSpec("dino"), toy_data, torch.device("cpu"))
