"""The seeds of the suite's random streams, pinned: they decide every trained model and sample, so a change
to bench/core/seeds.py changes the benchmark's numbers and must be deliberate. The values are those of the
formulas the engine and fgscore used before bench/core/seeds.py owned them."""
import pytest

from bench.core.seeds import (epoch_order_seed, reference_noise_seed, sample_condition_seed, sample_noise_seed,
                              train_step_seed)


@pytest.mark.parametrize("train_seed, step, seed", [
    (0, 0, 0), (3, 17, 3_134_632), (12345, 99999, 13_136_929_116)])
def test_train_step_seed(train_seed, step, seed):
    assert train_step_seed(train_seed, step) == seed


@pytest.mark.parametrize("train_seed, epoch, seed", [
    (0, 0, 104_729), (3, 17, 3_239_361), (2**40, 5, 1_099_514_926_311_027_652)])
def test_epoch_order_seed(train_seed, epoch, seed):
    assert epoch_order_seed(train_seed, epoch) == seed


@pytest.mark.parametrize("gen_seed, chunk, noise, condition", [
    (0, 0, 0, 50_000), (1, 0, 100_003, 150_003), (1, 3, 100_006, 150_006), (7, 2, 700_023, 750_023),
    (123456, 9, 12_345_970_377, 12_346_020_377)])
def test_sample_seeds(gen_seed, chunk, noise, condition):
    assert sample_noise_seed(gen_seed, chunk) == noise
    assert sample_condition_seed(gen_seed, chunk) == condition


@pytest.mark.parametrize("ref_seed, t, draw, seed", [
    (0, 0, 0, 0), (0, 999, 3, 1_007_994), (5, 100, 1, 504_616_036), (42, 0, 2, 4_237_927_136)])
def test_reference_noise_seed(ref_seed, t, draw, seed):
    assert reference_noise_seed(ref_seed, t, draw) == seed
