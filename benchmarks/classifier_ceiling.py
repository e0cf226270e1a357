"""Are bench's classifiers as strong as a plain CNN? Per data set, the expert, the scorer and the
tstr_acc / aug_gain recipe, each trained on the real train split as bench trains it, against a plain
reference CNN trained on the same split (Adam 1e-3, batch 64, 30 epochs, its best val epoch kept, no
augmentation, no class balancing): accuracy on the real test split, side by side in one run.

    python benchmarks/make_digit_sets.py            # once: the digit sets below, from scikit-learn
    python benchmarks/classifier_ceiling.py [--sets results/digit-sets] [--threads 1] [--only NAME]

Data sets: synth-tissue with the default suite's [data], the 28-px grayscale 10-class
`npz:` digit set and the 32-px `folder:` digit set with unequal classes (13.7 to 1), both split 60/20/20
so that their test splits hold a few hundred images, every class some. Target: every classifier within
0.03 of the reference.
Also printed: balanced accuracy (mean per-class recall), and tstr_acc's real reference as the suite
computes it (the recipe on as many real train images per scored class as the suite generates,
the default suite's samples_per_class), against chance. The expert and scorer are cached in --cache, as
in a suite (a second run only loads them).
"""
from __future__ import annotations

import argparse
import copy
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.config import DEFAULT_SUITE, load_config
from bench.datasets import load_prepared
from bench.datasets.base import DataConfig, PreparedData
from bench.models.expert import labelled_model_space, load_classifier, train_classifier
from bench.metrics.utility import RECIPE, matched_real, recipe_accuracy, recipe_classifier

TARGET_GAP = 0.03
SPLIT = (0.6, 0.2, 0.2)     # of the digit sets: test splits of 360 and 135 images
REFERENCE_EPOCHS, REFERENCE_BATCH, REFERENCE_LR, REFERENCE_SEED = 30, 64, 1e-3, 0


@dataclass(frozen=True)
class Row:
    name: str
    predictions: np.ndarray     # of every real test image
    seconds: float
    epochs: str


def reference_cnn(channels: int, num_classes: int) -> nn.Module:
    """A plain VGG-style CNN: two 3x3 conv pairs with max-pooling, a third conv, global pooling."""
    def block(c_in, c_out):
        return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(*block(channels, 32), *block(32, 32), nn.MaxPool2d(2),
                         *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
                         *block(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, num_classes))


def predictions(net: nn.Module, data: PreparedData) -> np.ndarray:
    with torch.no_grad():
        x = labelled_model_space(data.test_x, data.test_y, "cpu")[0]
        return torch.cat([net(batch) for batch in x.split(256)]).argmax(1).numpy()


def train_reference(data: PreparedData) -> Row:
    """The plain loop: nothing of bench's trainer (fit_best), so it checks that trainer too."""
    start = time.perf_counter()
    torch.manual_seed(REFERENCE_SEED)
    gen = torch.Generator().manual_seed(REFERENCE_SEED)
    net = reference_cnn(data.channels, data.num_classes)
    train_x, train_y = labelled_model_space(data.train_x, data.train_y, "cpu")
    val_x, val_y = labelled_model_space(data.val_x, data.val_y, "cpu")
    opt = torch.optim.Adam(net.parameters(), lr=REFERENCE_LR)
    best, best_state, best_epoch = -1.0, None, 0
    for epoch in range(REFERENCE_EPOCHS):
        net.train()
        order = torch.randperm(len(train_x), generator=gen)
        for i in range(0, len(order) - 1, REFERENCE_BATCH):
            idx = order[i:i + REFERENCE_BATCH]
            loss = F.cross_entropy(net(train_x[idx]), train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            accuracy = (net(val_x).argmax(1) == val_y).float().mean().item()
        if accuracy > best:
            best, best_state, best_epoch = accuracy, copy.deepcopy(net.state_dict()), epoch
    net.load_state_dict(best_state)
    return Row("reference CNN", predictions(net, data), time.perf_counter() - start,
               f"best {best_epoch + 1} of {REFERENCE_EPOCHS}")


def epochs_text(log: list[dict], cap: int, patience: int) -> str:
    best = max(log, key=lambda e: (e["val_balanced_acc"], -e["val_loss"]))["epoch"] + 1
    return f"best {best} of {len(log)} run (cap {cap}, patience {patience})"


def suite_classifier(role: str, data: PreparedData, cfg, cache: Path) -> Row:
    start = time.perf_counter()
    classifier = load_classifier(train_classifier(role, data, cfg, cache))
    seconds = time.perf_counter() - start
    return Row(f"{role} ({cfg.backbone})", predictions(classifier, data), seconds,
               epochs_text(classifier.provenance["train_log"], cfg.epochs, cfg.patience))


def tstr_classifier(data: PreparedData) -> Row:
    start = time.perf_counter()
    net = recipe_classifier(data.train_x, data.train_y, list(range(data.num_classes)))
    return Row("tstr recipe (small_cnn)", predictions(net, data), time.perf_counter() - start,
               f"cap {RECIPE.epochs}, patience {RECIPE.patience}, {RECIPE.held_out:.0%} of train held out")


def balanced_accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean([np.mean(pred[labels == c] == c) for c in np.unique(labels)]))


def suite_tstr_reference(data: PreparedData, per_class: int) -> tuple[float, float]:
    """tstr_acc's real reference as a suite computes it, and chance: the recipe on `per_class` real train
    images of each scored class, accuracy on the scored test images."""
    classes = list(data.scored_classes)
    real_x, real_y = matched_real(data.train_x, data.train_y, {c: per_class for c in classes})
    test = np.isin(data.test_y, classes)
    return recipe_accuracy(real_x, real_y, data.test_x[test], data.test_y[test], classes), 1 / len(classes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", type=Path, default=Path("results/digit-sets"), help="make_digit_sets.py --out")
    parser.add_argument("--cache", type=Path, default=Path("results/cache-benchmarks"))
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; 1, as a suite's Ray task trains the expert and scorer (float order, "
                             "and so the figures, depend on it)")
    parser.add_argument("--only", default="", help="one data set: synth-tissue, npz or folder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(DEFAULT_SUITE)
    sets = {"synth-tissue": cfg.data,
            "npz": DataConfig(name=f"npz:{args.sets / 'digits28.npz'}", image_size=28, exclude_classes=(),
                              split=SPLIT),
            "folder": DataConfig(name=f"folder:{args.sets / 'digits-unequal'}", image_size=32, exclude_classes=(),
                                 split=SPLIT)}
    table = []
    for key, data_cfg in sets.items():
        if args.only and key != args.only:
            continue
        data = load_prepared(data_cfg)
        counts = np.bincount(data.train_y)
        print(f"\n{key}: {data_cfg.name}, {data.num_classes} classes, {data.image_size} px x {data.channels}, "
              f"train/val/test {len(data.train_y)}/{len(data.val_y)}/{len(data.test_y)}, train images per class "
              f"{counts.min()} to {counts.max()}", flush=True)
        rows = [train_reference(data), suite_classifier("expert", data, cfg.expert, args.cache),
                suite_classifier("scorer", data, cfg.scorer, args.cache), tstr_classifier(data)]
        reference = float(np.mean(rows[0].predictions == data.test_y))
        print("| classifier | test acc | Δ vs reference | balanced acc | epochs | s |\n|---|---|---|---|---|---|")
        for row in rows:
            accuracy = float(np.mean(row.predictions == data.test_y))
            table.append((key, row.name, accuracy - reference))
            print(f"| {row.name} | {accuracy:.3f} | {accuracy - reference:+.3f} | "
                  f"{balanced_accuracy(row.predictions, data.test_y):.3f} | {row.epochs} | {row.seconds:.0f} |",
                  flush=True)
        tstr, chance = suite_tstr_reference(data, cfg.sample.samples_per_class)
        print(f"tstr_acc's real reference in a suite ({cfg.sample.samples_per_class} real train images a scored "
              f"class): {tstr:.3f}, chance {chance:.3f}: {'above' if tstr > chance else 'NOT above'} chance",
              flush=True)
    misses = [f"{key} {name} ({gap:+.3f})" for key, name, gap in table if gap < -TARGET_GAP]
    print(f"\nwithin {TARGET_GAP} of the reference CNN: " + ("every classifier" if not misses else
                                                           "all but " + ", ".join(misses)))


if __name__ == "__main__":
    main()
