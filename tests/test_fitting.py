"""The classifiers' one trainer (bench.models.fitting): early stopping keeps the best epoch and stops after
`patience` epochs without a better one, halving the lr after each; the balanced sampler draws classes
equally, the loss weights are inverse class frequencies, and either lifts a small class's recall."""
import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from fractions import Fraction

from bench.models.fitting import (PLATEAU_LR_FACTOR, FitRecipe, balanced_accuracy, balanced_order, class_weights,
                                  fit_best, stratified_holdout)

RECIPE = FitRecipe(epochs=20, patience=3, class_balance="none", batch_size=4, lr=1e-2, augment=False)


class ScriptedEpochs(nn.Module):
    """A classifier whose val outputs follow a script by epoch (`val_logits`, the val input being the image's
    index); in training it outputs a learnable constant. The epoch that last changed its weights is a
    buffer, so loading a state dict shows which epoch was kept."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.weight = nn.Parameter(torch.zeros(1))
        self.epochs_run = 0
        self.register_buffer("epoch", torch.tensor(-1))

    def train(self, mode: bool = True):
        if mode:
            self.epoch.fill_(self.epochs_run)
            self.epochs_run += 1
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.weight * torch.ones(len(x), self.num_classes)
        return self.val_logits(x.view(-1), self.epochs_run - 1)


class ScriptedValidation(ScriptedEpochs):
    """Val accuracy in epoch e is val_accuracies[e]: a val image is classified right (label 0) when its
    index is below that fraction of the val set, with logits of size confidences[e] (the larger, the larger
    the val loss at a given accuracy of 0.5)."""

    def __init__(self, val_accuracies: list[float], confidences: list[float] | None = None):
        super().__init__(2)
        self.val_accuracies = val_accuracies
        self.confidences = confidences or [5.0] * len(val_accuracies)

    def val_logits(self, index: torch.Tensor, epoch: int) -> torch.Tensor:
        right = index < self.val_accuracies[epoch] * 10
        logits = torch.stack([right.float(), (~right).float()], 1)  # label 0 is right
        return logits * self.confidences[epoch]


def _scripted_fit(val_accuracies: list[float], recipe: FitRecipe = RECIPE,
                  confidences: list[float] | None = None):
    net = ScriptedValidation(val_accuracies, confidences)
    train = torch.zeros(8, 1, 1, 1), torch.zeros(8, dtype=torch.long)
    val = torch.arange(10.0).view(10, 1, 1, 1), torch.zeros(10, dtype=torch.long)
    log = fit_best(net, train, val, recipe, torch.Generator().manual_seed(0), 2)
    return net, log


def test_early_stopping_stops_after_patience_and_keeps_the_best_epoch():
    net, log = _scripted_fit([0.5, 0.7, 0.6, 0.7, 0.6, 0.9, 1.0])
    assert [e["val_acc"] for e in log] == pytest.approx([0.5, 0.7, 0.6, 0.7, 0.6])  # 3 misses after epoch 1
    assert int(net.epoch) == 1 and not net.training                             # epoch 1's weights, eval mode
    lr = RECIPE.lr
    assert [e["lr"] for e in log] == pytest.approx([lr, lr, lr, lr * PLATEAU_LR_FACTOR, lr * PLATEAU_LR_FACTOR ** 2])


def test_an_improvement_resets_the_patience_and_the_cap_ends_training():
    net, log = _scripted_fit([0.1, 0.2, 0.1, 0.1, 0.3, 0.4, 0.5, 0.6],
                             dataclasses.replace(RECIPE, epochs=6))
    assert len(log) == 6 and int(net.epoch) == 5


def test_an_equal_accuracy_with_a_lower_loss_is_better():
    net, log = _scripted_fit([0.5] * 8, confidences=[5, 4, 3, 3, 3, 3, 3, 3])
    assert len(log) == 3 + RECIPE.patience and int(net.epoch) == 2  # an equal loss is no improvement


class ScriptedPredictions(ScriptedEpochs):
    """Val predictions in epoch e are predictions[e]."""

    def __init__(self, predictions: list[list[int]], num_classes: int):
        super().__init__(num_classes)
        self.predictions = torch.tensor(predictions)

    def val_logits(self, index: torch.Tensor, epoch: int) -> torch.Tensor:
        return nn.functional.one_hot(self.predictions[epoch][index.long()], self.num_classes).float() * 5


def test_early_stopping_scores_balanced_accuracy_on_an_imbalanced_val_split():
    """Val: 9 images of class 0, 1 of class 1. Epoch 0 calls everything class 0 (accuracy 0.9, balanced
    0.5); epoch 1 finds the small class at the cost of one large-class image (0.9 and 0.94): epoch 1 is kept."""
    val_y = [0] * 9 + [1]
    epochs = [[0] * 10, [1] + [0] * 8 + [1]]
    net = ScriptedPredictions(epochs + [[0] * 10] * 4, 2)
    train = torch.zeros(8, 1, 1, 1), torch.zeros(8, dtype=torch.long)
    val = torch.arange(10.0).view(10, 1, 1, 1), torch.tensor(val_y)
    log = fit_best(net, train, val, RECIPE, torch.Generator().manual_seed(0), 2)
    assert int(net.epoch) == 1
    assert [e["val_acc"] for e in log[:2]] == pytest.approx([0.9, 0.9])
    assert [e["val_balanced_acc"] for e in log[:2]] == pytest.approx([0.5, (8 / 9 + 1) / 2])


def test_balanced_accuracy_is_exact_and_equals_accuracy_on_equal_classes():
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    assert balanced_accuracy(torch.tensor([0, 0, 1, 1, 1, 1, 2, 0, 0]), labels) == Fraction(6, 9)
    assert balanced_accuracy(torch.tensor([0, 1, 2]), torch.tensor([0, 0, 2])) == Fraction(3, 4)  # (1/2 + 1) / 2


def test_balanced_sampler_draws_every_class_equally_and_covers_small_classes():
    labels = torch.tensor([0] * 40 + [1] * 10 + [2] * 2)
    order = balanced_order(labels, torch.Generator().manual_seed(0))
    drawn = torch.bincount(labels[order], minlength=3)
    assert drawn.tolist() == [18, 18, 18]                    # ceil(52 / 3) each
    assert set(order[labels[order] == 1].tolist()) == set(range(40, 50))  # every image of a small class
    assert set(order[labels[order] == 2].tolist()) == {50, 51}
    assert len(set(order[labels[order] == 0].tolist())) == 18             # a large class: no repeats
    balanced = torch.tensor([0, 1, 2] * 5)
    assert sorted(balanced_order(balanced, torch.Generator().manual_seed(1)).tolist()) == list(range(15))


def test_class_weights_are_inverse_frequencies():
    weights = class_weights(torch.tensor([0] * 30 + [1] * 10), 3)
    assert weights.tolist() == pytest.approx([40 / 60, 40 / 20, 0.0])  # total / (classes present * count)
    assert class_weights(torch.tensor([0, 1, 2] * 4), 3).tolist() == pytest.approx([1, 1, 1])


@pytest.mark.parametrize("class_balance", ["sampler", "loss"])
def test_balancing_lifts_the_recall_of_a_small_class(class_balance):
    """Two overlapping 1-d classes, 19 to 1: trained as they come, a classifier favours the large class;
    balanced, the small one's recall rises to about that of the large one."""
    gen = np.random.default_rng(0)

    def split(n0, n1):
        x = np.concatenate([gen.normal(-1, 1, n0), gen.normal(1, 1, n1)]).astype(np.float32)
        return torch.from_numpy(x).view(-1, 1, 1, 1), torch.tensor([0] * n0 + [1] * n1)

    train, val, test = split(950, 50), split(190, 10), split(500, 500)  # val as imbalanced as train

    def small_class_recall(balance: str) -> float:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Flatten(), nn.Linear(1, 2))
        recipe = FitRecipe(epochs=8, patience=8, class_balance=balance, batch_size=64, lr=0.05, augment=False)
        fit_best(net, train, val, recipe, torch.Generator().manual_seed(0), 2)
        with torch.no_grad():
            return float((net(test[0]).argmax(1)[test[1] == 1] == 1).float().mean())

    plain, balanced = small_class_recall("none"), small_class_recall(class_balance)
    assert plain < 0.6 < 0.75 < balanced  # about 0.4 against 0.84 (the Bayes rule of equal priors)


def test_stratified_holdout_holds_out_a_fraction_of_every_class():
    labels = np.array([0] * 10 + [1] * 5 + [2] * 1)
    train, held = stratified_holdout(labels, 0.2, seed=0)
    assert np.bincount(labels[held], minlength=3).tolist() == [2, 1, 0]  # a single image stays in train
    assert sorted(np.concatenate([train, held]).tolist()) == list(range(16))
