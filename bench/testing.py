"""Conformance checks every conditioning method passes, built-in or plug-in: a tiny U-Net on toy
data, a few CPU steps, fixed seeds.

Two ways in, the same checks:
- in a test suite, a class inherits `MethodConformance` and sets `variant` (the pattern of diffusers'
  SchedulerCommonTest); pytest runs one test per check;
- `bench check-method FILE.py` runs them on every method a plug-in file defines (`run_checks`).
A check raises `ConformanceError` (an AssertionError) saying what the method got wrong.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from bench.config import Config, load_config
from bench.core.errors import BenchError
from bench.core.pixels import to_model_space
from bench.datasets.base import PreparedData
from bench.diffusion import Sampler
from bench.engine.exported import Exported
from bench.engine.large_image import LargeImageParams, embedding_grid, sample_large
from bench.engine.pipeline import rebuild
from bench.engine.sample import generation_labels, sample_images
from bench.engine.tasks import expert_loader
from bench.engine.train import Built, build, load_model, train_model
from bench.methods import REGISTRY, load_plugin, parse_variant

CPU = torch.device("cpu")


def toy_data(num_classes=3, per_class=8, size=16, channels=3, seed=0) -> PreparedData:
    """Class-coloured noise images: distinct per class, cheap, no generator needed."""
    rng = np.random.default_rng(seed)

    def split(n):
        y = np.repeat(np.arange(num_classes), n)
        base = (np.arange(num_classes)[:, None] * 255 // max(1, num_classes - 1))[y]
        x = np.clip(base[:, None, None, :1] + rng.normal(0, 30, (len(y), size, size, channels)), 0, 255)
        return x.astype(np.uint8), y.astype(np.int64)

    tr, va, te = split(per_class), split(max(2, per_class // 2)), split(max(2, per_class // 2))
    return PreparedData("toy", tuple(f"c{i}" for i in range(num_classes)), tuple(range(num_classes)),
                        *tr, *va, *te)


def tiny_config() -> Config:
    """The `tiny` preset on the CPU, run in-process."""
    return load_config(None, "tiny", {"execution": {"executor": "local", "device": "cpu"}})


class ConformanceError(AssertionError):
    """A method broke one of the rules every method keeps."""


def _require(ok, message: str) -> None:
    if not ok:  # not `assert`: the checks must also hold under python -O
        raise ConformanceError(message)


@dataclass(frozen=True)
class Setup:
    """One method variant on toy data with the tiny config; files go under `workdir`."""

    variant: str
    workdir: Path
    data: PreparedData
    cfg: Config

    @classmethod
    def make(cls, variant: str, workdir: Path) -> "Setup":
        return cls(variant, Path(workdir), toy_data(), tiny_config())

    @property
    def cache(self) -> Path:
        return self.workdir / "cache"

    def load_expert(self):
        return expert_loader(self.cfg, self.data, self.cache, CPU)

    def build(self) -> Built:
        torch.manual_seed(0)
        return build(self.cfg, self.variant, self.data, CPU, self.load_expert(), self.cache)

    def sample(self, built: Built, gen_seed: int) -> np.ndarray:
        return sample_images(built, self.cfg, generation_labels(self.data.scored_classes, 2), gen_seed, CPU)


def loss_is_finite_and_falls_on_a_fixed_batch(setup: Setup) -> None:
    built, data = setup.build(), setup.data
    x0 = to_model_space(data.train_x[:8])
    labels = torch.from_numpy(data.train_y[:8])
    params = [p for p in built.model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=2e-3)
    losses = []
    for _ in range(25):
        terms = built.method.loss(built.model, built.schedule, x0, labels, torch.Generator().manual_seed(0))
        _require("loss" in terms, f"loss() returned {sorted(terms)}; the dict must hold 'loss'")
        bad = sorted(k for k, v in terms.items() if not torch.isfinite(v).all())
        _require(not bad, f"loss terms {bad} are not finite")
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        losses.append(terms["loss"].item())
    first, last = np.mean(losses[:3]), np.mean(losses[-5:])
    _require(last < 0.8 * first, f"25 steps on one batch took the loss from {first:.4g} to {last:.4g}; "
                                 "expected a fall below 80%")


def samples_have_the_right_shape_and_range(setup: Setup) -> None:
    built, data = setup.build(), setup.data
    built.model.eval()
    images = setup.sample(built, 0)
    expected = (len(data.scored_classes) * 2, data.image_size, data.image_size, data.channels)
    _require(images.dtype == np.uint8, f"samples are {images.dtype}, expected uint8")
    _require(images.shape == expected, f"samples have shape {images.shape}, expected {expected}")
    _require(images.std() > 0, "every sample pixel has the same value")


def same_seed_gives_identical_samples(setup: Setup) -> None:
    built = setup.build()
    built.model.eval()
    a, b, c = setup.sample(built, 3), setup.sample(built, 3), setup.sample(built, 4)
    _require(np.array_equal(a, b), "generation seed 3 gave different samples on two calls; a hook that "
                                   "draws noise must use the generator it is given, not the global RNG")
    _require(not np.array_equal(a, c), "generation seeds 3 and 4 gave identical samples")


def checkpoint_round_trip(setup: Setup) -> None:
    run_dir = setup.workdir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    train_model(setup.cfg, setup.variant, 0, setup.data, run_dir, setup.load_expert(), setup.cache)
    first, second = (load_model(setup.cfg, setup.variant, setup.data, run_dir, CPU, setup.load_expert(),
                                setup.cache) for _ in range(2))
    a, b = first.model.state_dict(), second.model.state_dict()
    _require(list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a),
             "two loads of one checkpoint hold different weights")
    _require(np.array_equal(setup.sample(first, 1), setup.sample(second, 1)),
             "two loads of one checkpoint sample differently at one seed")


def export_samples_the_same(setup: Setup) -> None:
    """What `bench export` keeps of a model (its weights and the method's `export_state`) samples as the model
    does, with neither the train split nor the expert (bench.engine.pipeline.rebuild)."""
    from diffusers import UNet2DConditionModel

    built = setup.build()
    built.model.eval()
    exported = Exported.of(built, Sampler.from_config(built.schedule, setup.cfg.sample), setup.cfg, setup.data, {})
    unet = UNet2DConditionModel.from_config(built.model.unet.config)
    unet.load_state_dict(built.model.unet.state_dict())
    rebuilt = rebuild(unet.eval(), exported, CPU)
    _require(np.array_equal(setup.sample(built, 2), setup.sample(rebuilt, 2)),
             "the model rebuilt from its export samples differently at one seed: export_state must hold what "
             "sampling reads from the train split or the expert, and load_export_state take it back")


def trains_samples_and_scores_under_bf16_autocast(setup: Setup) -> None:
    """A training step, sampling and the method's evaluation features as a GPU run makes them with
    execution.bf16: the steps under bf16 autocast, the evaluation features after it. CPU autocast casts
    as CUDA's does, so a method that mixes dtypes (a float32 weight meeting a bf16 activation, a statistic
    computed under autocast and used after it) fails here, without a GPU."""
    built, data = setup.build(), setup.data
    x0 = to_model_space(data.train_x[:8])
    labels = torch.from_numpy(data.train_y[:8])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = built.method.loss(built.model, built.schedule, x0, labels, torch.Generator().manual_seed(0))["loss"]
    loss.backward()
    _require(torch.isfinite(loss), f"the loss under bf16 autocast is {loss.item()}")
    built.model.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        images = setup.sample(built, 0)
    _require(images.std() > 0, "every sample pixel under bf16 autocast has the same value")
    features = built.method.evaluation_features(built.model, x0, labels)
    bad = sorted(k for k, v in (features or {}).items() if np.issubdtype(np.asarray(v).dtype, np.floating)
                 and not np.isfinite(v).all())
    _require(not bad, f"evaluation features {bad} after bf16 sampling are not finite")


def a_declared_spatial_condition_paints_large_images(setup: Setup) -> None:
    """A method that declares `spatial_condition` embeds tiles and turns a grid of embeddings into a large image
    (bench/engine/large_image.py): a 2 x 2-tile canvas from the embeddings of four train tiles. Others: nothing."""
    if not parse_variant(setup.variant)[0].spatial_condition:
        return
    built, data = setup.build(), setup.data
    built.model.eval()
    tiles = to_model_space(data.train_x[:4])
    grid = embedding_grid(built, tiles.unflatten(0, (2, 2)).permute(2, 0, 3, 1, 4).flatten(1, 2).flatten(2, 3)[None], 2)
    _require(grid.ndim == 4 and grid.shape[:3] == (1, 2, 2), f"the embeddings of 2 x 2 tiles have shape "
             f"{tuple(grid.shape)}; embed must return one row (B, E) per image")
    canvas = sample_large(built, setup.cfg, grid, LargeImageParams(k=2), 0, CPU)
    expected = (1, built.method.ctx.channels, 2 * data.image_size, 2 * data.image_size)
    _require(tuple(canvas.shape) == expected, f"a 2 x 2-tile large image has shape {tuple(canvas.shape)}, "
                                              f"expected {expected}")
    _require(canvas.std() > 0, "every pixel of the large image has the same value")


CHECKS: tuple[Callable[[Setup], None], ...] = (
    loss_is_finite_and_falls_on_a_fixed_batch, samples_have_the_right_shape_and_range,
    same_seed_gives_identical_samples, checkpoint_round_trip, export_samples_the_same,
    trains_samples_and_scores_under_bf16_autocast, a_declared_spatial_condition_paints_large_images)


def check_name(check: Callable) -> str:
    return check.__name__.replace("_", " ")


def run_checks(variant: str, workdir: Path) -> Iterator[tuple[str, str | None]]:
    """(check name, None if it passed else what went wrong) for each of CHECKS, in order."""
    for check in CHECKS:
        try:
            check(Setup.make(variant, workdir))
        except ConformanceError as err:
            yield check_name(check), str(err)
        except BenchError:
            raise  # bad input, not a broken method
        except Exception as err:  # a hook that raises fails its check; the others still run
            yield check_name(check), f"{type(err).__name__}: {err}".splitlines()[0]
        else:
            yield check_name(check), None


def plugin_methods(source: str) -> list[str]:
    """Load a plug-in (`load_plugin`: a .py file or a module) and return the names of the methods it
    registered; BenchError when it registers none."""
    before = dict(REGISTRY)
    load_plugin(source)
    names = [name for name, cls in REGISTRY.items() if before.get(name) is not cls]
    if not names:
        raise BenchError(f"{source} defines no method: subclass bench.methods.ConditioningMethod and set "
                         "its `name` (see README, Adding a method)")
    return names


class MethodConformance:
    """Inherit and set `variant` (e.g. "offset-noise:strength=0.2"): pytest runs every check of CHECKS on
    it, as test_<check name>."""

    variant: str = ""


def _conformance_test(check: Callable[[Setup], None]):
    def test(self, tmp_path):
        check(Setup.make(self.variant, tmp_path))
    test.__name__, test.__doc__ = f"test_{check.__name__}", check.__doc__
    return test


for _check in CHECKS:
    setattr(MethodConformance, f"test_{_check.__name__}", _conformance_test(_check))
del _check
