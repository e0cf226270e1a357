"""Seed mixing: the one owner of how the suite's integer seeds (a run's train seed, an evaluation's
generation seed, a method's own seed parameter) become the seeds of its random streams.

Every stream is a `torch.Generator` seeded by a pure function of the integers that name it, so a
stream is reproduced from those integers alone: a resumed training run sees the batches and noise an
uninterrupted one would, and every method evaluated at generation seed s draws the same sampling
noise. The integers returned here decide every sample and trained model: changing any constant changes
the numbers the benchmark produces (tests/test_seeds.py pins them).
"""
from __future__ import annotations

# Training (bench/engine/train.py): one stream per (train seed, step), and one per (train seed, epoch)
# for the batch order, the two kept apart by a salt.
TRAIN_SEED_STRIDE = 1_000_003
TRAIN_STEP_STRIDE = 7919
TRAIN_SALT_STRIDE = 104_729
EPOCH_ORDER_SALT = 1

# Sampling (bench/engine/sample.py): one noise stream and one condition stream per (generation seed,
# chunk of images), all distinct while a generation seed has at most CONDITION_STREAM_OFFSET chunks.
GEN_SEED_STRIDE = 100_003
CONDITION_STREAM_OFFSET = 50_000

# The validation loss at checkpoints (bench/engine/train.py): one stream named by no integer, so every
# checkpoint of every run and method is scored on the same timesteps and noise; a generator of its own,
# so no training stream is drawn from.
VAL_LOSS_SEED = 2**61 - 1

# Reference noise of a method that keeps fixed reference images (its `ref_seed` parameter): one stream per
# (ref_seed, noise level t, draw), distinct for t below REF_SEED_STRIDE (train.num_train_timesteps is at most
# 100_000) and n_draws up to 1_009.
REF_SEED_STRIDE = 100_003
REF_LEVEL_STRIDE = 1_009


def _train_mix(train_seed: int, index: int, salt: int) -> int:
    return (train_seed * TRAIN_SEED_STRIDE + index * TRAIN_STEP_STRIDE + salt * TRAIN_SALT_STRIDE) % (2**63)


def train_step_seed(train_seed: int, step: int) -> int:
    """Seed of training step `step`'s generator (its timesteps, noise, dropout and augmentation draws):
    a function of (train seed, step) alone, so a run resumed at any step continues the same streams."""
    return _train_mix(train_seed, step, 0)


def epoch_order_seed(train_seed: int, epoch: int) -> int:
    """Seed of epoch `epoch`'s batch permutation. Salted apart from `train_step_seed`, so the batch order
    is not the same draw as the step-`epoch` noise."""
    return _train_mix(train_seed, epoch, EPOCH_ORDER_SALT)


def sample_noise_seed(gen_seed: int, chunk: int) -> int:
    """Seed of the initial and per-step sampler noise of chunk `chunk` (of `sample.batch_size` images) at
    generation seed `gen_seed`. Method-independent, so every method evaluated at a generation seed draws
    its noise from the same stream (paired streams): the methods' samples differ only in how they condition."""
    return gen_seed * GEN_SEED_STRIDE + chunk


def sample_condition_seed(gen_seed: int, chunk: int) -> int:
    """Seed of the condition draws (e.g. an SSL embedding bank) of that chunk. A stream apart from the
    noise, so a method that draws conditions consumes none of the noise stream and its noise stays paired
    with every other method's."""
    return sample_noise_seed(gen_seed, chunk) + CONDITION_STREAM_OFFSET


def reference_noise_seed(ref_seed: int, t: int, draw: int) -> int:
    """Seed of noise draw `draw` at level `t` of a method's fixed reference images: a function of the
    method's `ref_seed`, so the references' noise is the same for every model, evaluation and call."""
    return (ref_seed * REF_SEED_STRIDE + t) * REF_LEVEL_STRIDE + draw
