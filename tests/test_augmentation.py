"""Augmentation belongs to the data set: each source declares it, training follows it, the run records it."""
import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from bench.core.store import RUN_CONFIG_FILE, SuiteStore
from bench.datasets import DataConfig, PreparedData, load_prepared
from bench.datasets.manifest import KATHER, KNOWN
from bench.engine.data import prepare_data
from bench.engine.plan import build_plan
from bench.engine.tasks import train_task
from bench.engine.train import BatchStream, train_model
from bench.methods import ConditioningMethod


def _oriented_images(n: int, size: int = 8) -> np.ndarray:
    """Images with an up and a left (a ramp along rows plus one along columns): every rotation or
    flip of one is a different image."""
    ramp = np.add.outer(np.arange(size) * 20, np.arange(size) * 3).astype(np.uint8)
    return np.stack([ramp + i for i in range(n)])


@pytest.fixture
def npz_source(tmp_path):
    path = tmp_path / "xray.npz"
    np.savez(path, images=_oriented_images(20), labels=np.arange(20) % 2)
    return f"npz:{path}"


def test_each_source_declares_its_augmentation(tmp_path, npz_source):
    synth = load_prepared(DataConfig(image_size=8, train_per_class=1, val_per_class=1, test_per_class=1))
    assert synth.meta["augment"] == "dihedral" and synth.meta["augment_from"] == "the data source"
    npz = load_prepared(DataConfig(name=npz_source, image_size=8, exclude_classes=()))
    assert npz.meta["augment"] == "none"
    turned_on = load_prepared(DataConfig(name=npz_source, image_size=8, exclude_classes=(), augment="dihedral"))
    assert turned_on.meta["augment"] == "dihedral" and turned_on.meta["augment_from"] == "data.augment"
    for c in ("a", "b"):
        (tmp_path / "tree" / c).mkdir(parents=True)
        for i in range(20):  # enough that val and test get images of each class too
            Image.fromarray(_oriented_images(1)[0]).save(tmp_path / "tree" / c / f"{i}.png")
    assert load_prepared(DataConfig(name=f"folder:{tmp_path / 'tree'}", image_size=8)).meta["augment"] == "none"
    assert KATHER.augment == "dihedral"
    medmnist = {name: s.augment for name, s in KNOWN.items() if s.kind == "medmnist-npz"}
    assert {n for n, a in medmnist.items() if a == "dihedral"} == {"pathmnist", "pathmnist_64", "pathmnist_128",
                                                                     "pathmnist_224"}


def _recorded_batches(monkeypatch) -> list[torch.Tensor]:
    """The x0 of every training step, as the method's loss receives it (not the checkpoints' val loss, which
    runs without gradients)."""
    seen = []
    original = ConditioningMethod.loss

    def recording_loss(self, model, schedule, x0, labels, generator):
        if torch.is_grad_enabled():
            seen.append(x0.detach().clone())
        return original(self, model, schedule, x0, labels, generator)

    monkeypatch.setattr(ConditioningMethod, "loss", recording_loss)
    return seen


def _unaugmented(data, cfg, steps, seed=0):
    batches = BatchStream(data, cfg.train.batch_size, seed, torch.device("cpu"))
    return [batches(step)[0] for step in range(steps)]


def _dihedral_images(x: torch.Tensor) -> list[torch.Tensor]:
    return [torch.rot90(x, k, (2, 3)).flip(3) if flip else torch.rot90(x, k, (2, 3))
            for k in range(4) for flip in (False, True)]


def test_orientation_dependent_data_trains_without_flips_synth_tissue_with_them(
        monkeypatch, tiny_config, tmp_path, npz_source):
    cfg = dataclasses.replace(tiny_config, train=dataclasses.replace(tiny_config.train, steps=8, batch_size=4))
    seen = _recorded_batches(monkeypatch)
    xray = load_prepared(DataConfig(name=npz_source, image_size=8, exclude_classes=()))
    (tmp_path / "xray").mkdir()
    train_model(cfg, "baseline", 0, xray, tmp_path / "xray")
    assert all(torch.equal(a, b) for a, b in zip(seen, _unaugmented(xray, cfg, 8), strict=True))

    # synth-tissue through the run task: rotated and flipped batches, and the run's config records it
    seen.clear()
    cfg = dataclasses.replace(cfg, suite=dataclasses.replace(cfg.suite, methods=("baseline",)))
    spec = build_plan(cfg)[0]
    store = SuiteStore(tmp_path / "results", cfg.suite.name)
    data_path = prepare_data(cfg, store.cache)
    assert train_task(cfg, spec, tmp_path / "results", data_path)["status"] == "done"
    run_dir = store.run_dir(spec.dataset, spec.variant, spec.train_seed, spec.run_id)
    assert json.loads((run_dir / RUN_CONFIG_FILE).read_text())["augment"] == "dihedral"
    plain = _unaugmented(PreparedData.load(data_path), cfg, 8)
    assert all(any(torch.equal(a, d) for d in _dihedral_images(b)) for a, b in zip(seen, plain, strict=True))
    assert sum(not torch.equal(a, b) for a, b in zip(seen, plain)) >= 4  # most steps draw a non-identity
