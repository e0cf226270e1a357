"""The suite classifiers (expert, scorer): train, cache, load, stay frozen and in eval mode."""
import dataclasses
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from conftest import make_data

from bench.core.errors import BenchError
from bench.core.pixels import to_model_space
from bench.models.expert import Classifier, ClassifierConfig, ScorerConfig, get_classifier, resized_up

TINY = ClassifierConfig(backbone="tiny", epochs=3, batch_size=8, lr=1e-2)


def test_trains_caches_and_loads(tmp_path):
    data = make_data(num_classes=3, per_class=16, size=16)
    expert = get_classifier("expert", data, TINY, tmp_path)
    assert isinstance(expert, Classifier) and expert.role == "expert"
    assert expert.test_accuracy > 0.9  # class-coloured noise is easy
    folders = list(tmp_path.glob("expert-*/"))
    assert len(folders) == 1
    info = json.loads((folders[0] / "classifier.json").read_text())
    assert info["confusion"] == expert.confusion.tolist()
    assert np.asarray(info["confusion"]).sum() == len(data.test_y)
    assert set(info["per_class_recall"]) == set(data.class_names)
    assert len(info["weights_sha256"]) == 64 and info["timm_model"] == "test_resnet"

    stamp = (folders[0] / "model.safetensors").stat().st_mtime_ns
    again = get_classifier("expert", data, TINY, tmp_path)  # from the cache: nothing retrained or rewritten
    assert (folders[0] / "model.safetensors").stat().st_mtime_ns == stamp
    x = to_model_space(data.test_x)
    torch.testing.assert_close(again(x), expert(x))
    assert again.test_accuracy == expert.test_accuracy


def test_frozen_and_always_eval(tmp_path):
    data = make_data(num_classes=2, per_class=8, size=16, channels=1)
    expert = get_classifier("expert", data, ClassifierConfig(backbone="tiny", epochs=1, batch_size=4), tmp_path)
    assert all(not p.requires_grad for p in expert.parameters())
    expert.train()
    assert not expert.training and not any(m.training for m in expert.modules())
    x = to_model_space(data.test_x)  # 1-channel input: the network was built with in_chans=1
    before = {k: v.clone() for k, v in expert.state_dict().items()}
    feats = expert.features(x)
    assert feats.shape == (len(x), expert.feature_dim)
    assert expert.logits(x).shape == (len(x), 2)
    both = expert.features_and_logits(x)
    torch.testing.assert_close(both[0], feats)
    torch.testing.assert_close(both[1], expert(x))
    for k, v in expert.state_dict().items():  # BatchNorm running statistics untouched
        torch.testing.assert_close(v, before[k])
    # Gradients flow to the input (feature alignment backpropagates nothing into the expert).
    x.requires_grad_(True)
    expert.features(x).sum().backward()
    assert x.grad is not None and all(p.grad is None for p in expert.parameters())


def test_resized_up_only_below_min_side():
    x = torch.rand(2, 3, 16, 24)
    assert resized_up(x, 32).shape == (2, 3, 32, 48)       # the smaller side reaches 32, the aspect kept
    assert resized_up(x, 16) is x and resized_up(x, 0) is x
    flat = torch.full((1, 1, 8, 8), 0.25)
    torch.testing.assert_close(resized_up(flat, 20), torch.full((1, 1, 20, 20), 0.25))  # bilinear: no new values


def test_min_side_reaches_the_network_in_training_and_use(tmp_path):
    """A classifier trained on 16-px images at min_side 32 sees 32-px inputs, and so does its loaded copy."""
    assert ScorerConfig().min_side == 32 and ClassifierConfig().min_side == 0
    data = make_data(num_classes=3, per_class=16, size=16)
    scorer = get_classifier("scorer", data, dataclasses.replace(TINY, min_side=32), tmp_path)
    assert scorer.test_accuracy > 0.9 and scorer.min_side == 32 and scorer.image_size == 16
    seen = []
    stem = next(m for m in scorer.net.modules() if isinstance(m, torch.nn.Conv2d))
    stem.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape[-2:])))
    x = to_model_space(data.test_x)
    scorer(x), scorer.features(x)
    assert seen == [(32, 32), (32, 32)]
    plain = get_classifier("scorer", data, TINY, tmp_path)
    assert plain.min_side == 0 and not torch.equal(plain(x), scorer(x))


def test_distinct_configs_get_distinct_entries(tmp_path):
    data = make_data(num_classes=2, per_class=4, size=16)
    get_classifier("expert", data, ClassifierConfig(backbone="tiny", epochs=1, batch_size=4), tmp_path)
    get_classifier("expert", data, ClassifierConfig(backbone="tiny", epochs=1, batch_size=4, seed=1), tmp_path)
    get_classifier("expert", data, ClassifierConfig(backbone="tiny", epochs=1, batch_size=4, patience=1), tmp_path)
    get_classifier("expert", data, ClassifierConfig(backbone="tiny", epochs=1, batch_size=4, class_balance="loss"),
                   tmp_path)
    assert len(list(tmp_path.glob("expert-*/classifier.json"))) == 4  # the recipe is in the cache key


def test_concurrent_callers_train_once(tmp_path, monkeypatch):
    """flock locks belong to open file descriptions, so two threads contend like two processes."""
    import bench.models.expert as expert_module
    calls, train = [], expert_module._train
    monkeypatch.setattr(expert_module, "_train", lambda *a: calls.append(1) or train(*a))
    data = make_data(num_classes=2, per_class=4, size=16)
    cfg = ClassifierConfig(backbone="tiny", epochs=2, batch_size=4)
    with ThreadPoolExecutor(2) as pool:
        experts = list(pool.map(lambda _: get_classifier("expert", data, cfg, tmp_path), range(2)))
    assert len(calls) == 1
    assert experts[0].provenance["weights_sha256"] == experts[1].provenance["weights_sha256"]
    assert len(list(tmp_path.glob("expert-*/model.safetensors"))) == 1
    assert not list(tmp_path.glob("expert-*/.*.tmp"))


def test_unknown_backbone_and_missing_weights(tmp_path):
    data = make_data(num_classes=2, per_class=4, size=16)
    with pytest.raises(BenchError, match="unknown backbone"):
        get_classifier("expert", data, ClassifierConfig(backbone="no_such_net"), tmp_path)
    with pytest.raises(BenchError, match="does not exist"):
        get_classifier("expert", data, ClassifierConfig(backbone="tiny", weights=str(tmp_path / "missing.pt")),
                       tmp_path)


def test_local_weights_file_initialises_the_backbone(tmp_path):
    import timm
    from safetensors.torch import save_file
    source = timm.create_model("test_resnet", num_classes=5)
    save_file(source.state_dict(), tmp_path / "w.safetensors")
    data = make_data(num_classes=2, per_class=4, size=16, channels=1)
    cfg = ClassifierConfig(backbone="test_resnet", epochs=1, batch_size=4, lr=1e-9,
                           weights=str(tmp_path / "w.safetensors"))
    expert = get_classifier("expert", data, cfg, tmp_path / "cache")
    assert expert.provenance["init"]["init"] == "file"
    # A 1-channel stem from RGB weights is their sum over channels (timm's adapt_input_conv).
    stem = source.state_dict()["conv1.0.weight"].sum(1, keepdim=True)
    torch.testing.assert_close(expert.net.state_dict()["conv1.0.weight"], stem, atol=1e-5, rtol=1e-4)


def test_shipped_efficientnet_lite0_classifies_imagenet_photos():
    """The package's weights, renamed onto timm, still know a cat and an espresso (ImageNet 281-285, 967)."""
    from PIL import Image
    from skimage import data as photos

    from bench.models.pretrained import create_backbone
    net, init = create_backbone("efficientnet_lite0", 1000, 3)
    net.eval()
    x = np.stack([np.asarray(Image.fromarray(p).resize((224, 224), Image.BICUBIC))
                  for p in (photos.chelsea(), photos.coffee())])
    mean, std = torch.tensor(init["mean"]).view(1, 3, 1, 1), torch.tensor(init["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        pred = net(((to_model_space(x) + 1) / 2 - mean) / std).argmax(1).tolist()
    assert 281 <= pred[0] <= 285 and pred[1] == 967


@pytest.mark.parametrize("declared, flipped", [("dihedral", True), ("none", False)])
def test_flips_only_where_the_data_set_declares_itself_orientation_free(tmp_path, monkeypatch, declared,
                                                                         flipped):
    """A digit set is not orientation-free (a 6 is no 9): the classifiers must not learn it flipped."""
    import bench.models.fitting as fitting
    calls, dihedral = [], fitting.dihedral
    monkeypatch.setattr(fitting, "dihedral", lambda *a: calls.append(1) or dihedral(*a))
    data = dataclasses.replace(make_data(num_classes=2, per_class=4, size=16), meta={"augment": declared})
    get_classifier("expert", data, ClassifierConfig(backbone="tiny", epochs=1, batch_size=4), tmp_path)
    assert bool(calls) == flipped
