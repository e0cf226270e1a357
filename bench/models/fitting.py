"""The one training routine of bench's classifiers: the expert, the scorer (bench.models.expert) and the
fresh classifier of tstr_acc / aug_gain (bench.metrics.utility).

`fit_best` trains until balanced accuracy on a validation set stops improving (early stopping with
patience, under a cap on epochs) and keeps the best epoch's weights; classes are balanced by a sampler or
by the loss's weights, so a class with few images is learned as well as one with many (every scored
class gets as many generated images, and each counts as much in acc[scorer]). The early-stopping score is
balanced for the same reason: on an imbalanced val split, plain accuracy hardly sees a small class's
recall (the scorer kept by plain accuracy on a folder set of 13.7 to 1 recalled 0.00-0.33 of its smallest
class over four seeds). On a val split of equal classes the two are the same number.
"""
from __future__ import annotations

import copy
from fractions import Fraction
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ClassBalance = Literal["sampler", "loss", "none"]
# An epoch is one pass over the train split, or as many passes as make this many optimiser steps: on a
# small set (a few hundred images, or tstr's 10 generated images a class) one pass is a handful of steps,
# too few between two checks for patience, warm-up and the lr to mean anything.
MIN_EPOCH_STEPS = 30
# An epoch that brings no better val score multiplies the learning rate by this: the schedule anneals
# where the data need it. (Going back to the best weights at each such epoch as well was tried: the
# scorer, whose val accuracy climbs through dips, then stopped lower: test 0.89-0.90 against 0.94, <= 20 epochs.)
PLATEAU_LR_FACTOR = 0.5


@dataclass(frozen=True)
class FitRecipe:
    """How fit_best trains a classifier; [expert] and [scorer] (bench.models.expert) and the utility
    recipe (bench.metrics.utility) extend it with their network and their own defaults."""
    epochs: int = 30                    # at most this many epochs: passes over the train split (MIN_EPOCH_STEPS)
    patience: int = 3                   # stop after this many epochs in a row without a better balanced val accuracy
    #                                     (ties: lower val loss), the lr halved after each; the best epoch's weights are kept
    class_balance: ClassBalance = "sampler"  # "sampler": each epoch draws every class equally often (a small
    #                                     class's images repeat, a large one's are subsampled); "loss": cross-
    #                                     entropy weighted by inverse class frequency; "none": as the data come
    batch_size: int = 64
    lr: float = 3e-3                    # AdamW learning rate after a linear warm-up over the first epoch
    weight_decay: float = 0.05
    augment: bool = True                # random flips / transposes, where the data set declares itself
    #                                     orientation-free (histology has no up or left; a 6 is no 9)
    seed: int = 0                       # initialisation, batch order and augmentation


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse class frequency, scaled so that a balanced set gets weight 1 for every class; a class
    without images gets 0 (it adds nothing to the loss)."""
    counts = torch.bincount(labels.cpu(), minlength=num_classes).float()
    present = counts > 0
    weights = torch.zeros(num_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


def balanced_order(labels: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One epoch's image indices (CPU), about len(labels) of them, every class drawn equally often:
    each class's images in a fresh random order, cycled when it has fewer than its share and cut
    when it has more. On a balanced set this is a random permutation of all images."""
    labels = labels.cpu()
    present = labels.unique()
    share = -(-len(labels) // len(present))
    picks = []
    for c in present:
        members = torch.nonzero(labels == c).squeeze(1)
        cycles = -(-share // len(members))
        picks.append(torch.cat([members[torch.randperm(len(members), generator=gen)] for _ in range(cycles)])[:share])
    order = torch.cat(picks)
    return order[torch.randperm(len(order), generator=gen)]


def dihedral(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random element of the square's symmetry group per image: flips and a transpose generate it."""
    flips = torch.rand(3, x.shape[0], generator=gen) < 0.5
    x = torch.where(flips[0].view(-1, 1, 1, 1).to(x.device), x.flip(3), x)
    x = torch.where(flips[1].view(-1, 1, 1, 1).to(x.device), x.flip(2), x)
    if x.shape[2] == x.shape[3]:
        x = torch.where(flips[2].view(-1, 1, 1, 1).to(x.device), x.transpose(2, 3), x)
    return x


def balanced_accuracy(predicted: torch.Tensor, labels: torch.Tensor) -> Fraction:
    """Mean recall over the classes present in `labels`, exact: on equal classes it equals accuracy, ties
    included, so the early-stopping order of a balanced val split is plain accuracy's."""
    recalls = [Fraction(int((predicted[labels == c] == c).sum()), int((labels == c).sum())) for c in labels.unique()]
    return sum(recalls, Fraction(0)) / len(recalls)


@torch.no_grad()
def predict(net: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Logits of `net` (in eval mode) for every image of x, in batches."""
    return torch.cat([net(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def fit_best(net: nn.Module, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
             recipe: FitRecipe, gen: torch.Generator, num_classes: int) -> list[dict]:
    """Train `net` in place on `train` (images, int64 labels in 0..num_classes-1): cross-entropy, AdamW,
    batches in `gen`'s order. After each epoch it is scored on `val`; an epoch without a better score
    (higher balanced accuracy, or as high and a lower loss) multiplies the learning rate by PLATEAU_LR_FACTOR, and
    `recipe.patience` of them in a row, or `recipe.epochs`, end the training. The net ends with the best
    epoch's weights, in eval mode. Returns one log line per epoch run."""
    train_x, train_y = train
    val_x, val_y = val
    steps_per_pass = -(-len(train_x) // recipe.batch_size)
    passes = -(-MIN_EPOCH_STEPS // steps_per_pass)  # per epoch
    warmup = passes * steps_per_pass  # a linear warm-up over the first epoch
    opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    weight = class_weights(train_y, num_classes).to(train_x.device) if recipe.class_balance == "loss" else None
    best, best_state, since_best, lr, step, log = None, None, 0, recipe.lr, 0, []
    for epoch in range(recipe.epochs):
        net.train()
        order = torch.cat([balanced_order(train_y, gen) if recipe.class_balance == "sampler"
                           else torch.randperm(len(train_x), generator=gen) for _ in range(passes)])
        order = order.to(train_x.device)
        losses = []
        for i in range(0, len(order), recipe.batch_size):
            idx = order[i:i + recipe.batch_size]
            if len(idx) < 2:  # BatchNorm cannot train on one image
                continue
            for group in opt.param_groups:
                group["lr"] = lr * min(1.0, (step + 1) / warmup)
            x = dihedral(train_x[idx], gen) if recipe.augment else train_x[idx]
            loss = F.cross_entropy(net(x), train_y[idx], weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            losses.append(loss.item())
        net.eval()
        logits = predict(net, val_x)
        predicted = logits.argmax(1)
        score = (balanced_accuracy(predicted, val_y), F.cross_entropy(logits, val_y).item())
        log.append({"epoch": epoch, "lr": lr, "train_loss": float(np.mean(losses)) if losses else float("nan"),
                    "val_acc": (predicted == val_y).float().mean().item(), "val_balanced_acc": float(score[0]),
                    "val_loss": score[1]})
        if best is None or (score[0], -score[1]) > (best[0], -best[1]):
            best, best_state, since_best = score, copy.deepcopy(net.state_dict()), 0
            continue
        since_best += 1
        if since_best >= recipe.patience:
            break
        lr *= PLATEAU_LR_FACTOR
    net.load_state_dict(best_state)
    return log


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices: about `fraction` of each class held out (at least one image of every
    class with two or more, none of a class with one), chosen by `seed`."""
    rng = np.random.default_rng(seed)
    train, held = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        n_held = min(len(members) - 1, max(1, round(fraction * len(members))))
        held.append(members[:n_held])
        train.append(members[n_held:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))
