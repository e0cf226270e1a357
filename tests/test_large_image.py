"""Large-image sampling (bench/engine/large_image.py): the window layout, the grid interpolation, the x0
averaging over overlaps, and its refusals."""

import pytest
import torch

from bench.config import load_config
from bench.core.errors import BenchError
from bench.core.seeds import sample_noise_seed
from bench.core.pixels import to_model_space
from bench.diffusion import Sampler, Schedule
from bench.engine.large_image import (LargeImageParams, centre_weight, check_spatial, cut_windows, embedding_grid,
                                      merge_windows, sample_large, slerp, window_embeddings, window_layout)
from bench.engine.sample import sampler_settings
from bench.engine.tasks import expert_loader
from bench.engine.train import build
from bench.metrics.large_image import grid_origins

CPU = torch.device("cpu")
SSL = "ssl:simclr_steps=3"


def _config(**sample):
    """The tiny preset, centred (mu != 0), guided (g = 2), deterministic DDIM unless `sample` says otherwise."""
    return load_config(None, "tiny", {"execution": {"executor": "local", "device": "cpu"},
                                      "train": {"center_data": True},
                                      "sample": {"eta": 0.0, "guidance": 2.0, "batch_size": 3, **sample}})


def _built(data, cfg, tmp_path, variant=SSL):
    torch.manual_seed(0)
    cache = tmp_path / "cache"
    built = build(cfg, variant, data, CPU, expert_loader(cfg, data, cache, CPU), cache)
    built.model.eval()
    return built


def _large_image(data, k):
    """A real k x k-tile image (1, C, k S, k S) in [-1, 1] of train tiles of every class in turn."""
    picks = [int((data.train_y == i % data.num_classes).nonzero()[0][i // data.num_classes]) for i in range(k * k)]
    tiles = to_model_space(data.train_x[picks])                         # (k k, C, S, S), row by row
    return tiles.unflatten(0, (k, k)).permute(2, 0, 3, 1, 4).flatten(1, 2).flatten(2, 3)[None]


# ---- layout, interpolation, merging ------------------------------------------------------------------
def test_windows_cover_the_canvas_at_the_stride_and_end_flush_with_its_edge():
    assert grid_origins(64, 16, 16) == [0, 16, 32, 48]
    assert grid_origins(64, 16, 4) == list(range(0, 49, 4))
    assert grid_origins(48, 16, 12) == [0, 12, 24, 32]              # 12 does not divide 32: a flush window
    assert grid_origins(16, 16, 5) == [0]                           # k = 1: one window
    assert len(window_layout(64, 16, 4)) == 13 * 13                   # the authors' 13 x 13 at k = 4, s = w / 4


def test_consistent_window_estimates_merge_to_themselves():
    """Windows cut from one canvas, and identical windows stacked on one place, average to what each holds."""
    canvas = torch.randn(2, 3, 40, 40)
    origins = window_layout(40, 16, 8)
    assert torch.allclose(merge_windows(cut_windows(canvas, origins, 16), origins, canvas.shape), canvas, atol=1e-6)
    weighted = merge_windows(cut_windows(canvas, origins, 16), origins, canvas.shape, centre_weight(16))
    assert torch.allclose(weighted, canvas, atol=1e-5)                # decoded windows blended towards centres
    window = torch.randn(1, 3, 16, 16)
    same_place = [(0, 0)] * 5
    assert torch.allclose(merge_windows(window.expand(5, -1, -1, -1), same_place, (1, 3, 16, 16)), window, atol=1e-6)


def test_window_conditions_interpolate_their_grid_neighbours():
    grid = torch.randn(3, 3, 8)
    on_tiles = [(r * 16, c * 16) for r in range(3) for c in range(3)]
    for how in ("slerp", "lerp"):                                     # a window over a tile gets its embedding
        assert torch.allclose(window_embeddings(grid, on_tiles, 16, how), grid.flatten(0, 1), atol=1e-5)
    half = window_embeddings(grid, [(8, 0), (0, 8), (8, 8)], 16, "lerp")
    assert torch.allclose(half[0], (grid[0, 0] + grid[1, 0]) / 2, atol=1e-6)
    assert torch.allclose(half[1], (grid[0, 0] + grid[0, 1]) / 2, atol=1e-6)
    assert torch.allclose(half[2], grid[:2, :2].mean((0, 1)), atol=1e-6)
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert torch.allclose(slerp(a, b, torch.tensor([[0.5]])), torch.tensor([[0.5 ** 0.5, 0.5 ** 0.5]]))
    assert torch.equal(slerp(a, a, torch.tensor([[0.3]])), a)          # parallel: linear, no 0 / 0


def test_schedule_solves_the_centred_forward_process_both_ways():
    schedule = Schedule(mean=(0.3, -0.2, 0.1))
    x0, eps, t = torch.rand(2, 3, 4, 4) * 2 - 1, torch.randn(2, 3, 4, 4), torch.tensor([700])
    xt = schedule.add_noise(x0, eps, t.expand(2))
    assert torch.allclose(schedule.x0_from_eps(xt, eps, t), x0, atol=1e-4)
    assert torch.allclose(schedule.eps_from_x0(xt, x0, t), eps, atol=1e-4)


# ---- sampling ----------------------------------------------------------------------------------------
def test_grid_embeds_each_tile_of_the_real_image(toy_data, tmp_path):
    built = _built(toy_data, _config(), tmp_path)
    image = _large_image(toy_data, 2)
    grid = embedding_grid(built, image, 2)
    assert grid.shape[:3] == (1, 2, 2)
    assert torch.allclose(grid[0, 1, 0], built.method.embed(image[:, :, 16:, :16])[0], atol=1e-5)


def test_a_stride_of_the_window_samples_independent_tiles(toy_data, tmp_path):
    """s = w: no overlap, so each tile is what sampling it alone gives, from its crop of the canvas noise and
    its own grid embedding; s < w couples the tiles."""
    cfg = _config()
    built = _built(toy_data, cfg, tmp_path)
    method, model, k, w = built.method, built.model, 2, toy_data.image_size
    grid = embedding_grid(built, _large_image(toy_data, k), k)
    canvas = sample_large(built, cfg, grid, LargeImageParams(k=k, stride=w), 5, CPU)
    assert canvas.shape == (1, toy_data.channels, k * w, k * w)

    sampler = Sampler.from_config(built.schedule, sampler_settings(cfg))
    noise_gen = torch.Generator().manual_seed(sample_noise_seed(5, 0))
    start = sampler.start(method.initial_noise(canvas.shape, noise_gen, "cpu"))
    for r in range(k):
        for c in range(k):
            x = start[:, :, r * w:(r + 1) * w, c * w:(c + 1) * w]
            cond = method.embedding_tokens(model, grid[0, r, c][None])
            sampler.reset()
            with torch.no_grad():
                for i, t in enumerate(sampler.timesteps):
                    eps_hat = method.sampling_denoise(model, sampler.model_input(x, i), t.expand(1), cond, None)
                    x = method.step(sampler, x, eps_hat, i, noise_gen)
            assert torch.allclose(canvas[:, :, r * w:(r + 1) * w, c * w:(c + 1) * w], x, atol=1e-4), (r, c)

    overlapping = sample_large(built, cfg, grid, LargeImageParams(k=k, stride=w // 2), 5, CPU)
    assert (overlapping - canvas).abs().max() > 1e-3
    assert torch.equal(overlapping, sample_large(built, cfg, grid, LargeImageParams(k=k, stride=w // 2), 5, CPU))


# ---- refusals ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("params, message", [
    (dict(k=0), "k must be a whole number >= 1"),
    (dict(k=2.5), "k must be a whole number >= 1"),
    (dict(stride=0), "stride must be a whole number of pixels >= 1"),
    (dict(interpolation="cubic"), "interpolation must be slerp or lerp"),
    (dict(decode="tiles"), "decode must be windows or canvas"),
])
def test_bad_parameters_are_refused_in_one_line(params, message):
    with pytest.raises(BenchError, match=message) as err:
        LargeImageParams(**params)
    assert "\n" not in str(err.value)


def test_a_stride_beyond_the_window_is_refused():
    with pytest.raises(BenchError, match="stride 17 exceeds the 16-px window"):
        LargeImageParams(stride=17).window_stride(16)
    assert LargeImageParams().window_stride(16) == 4 and LargeImageParams(stride=16).window_stride(16) == 16


def test_methods_without_a_spatial_condition_and_x0_samplers_are_refused(toy_data, tmp_path):
    cfg = _config()
    baseline = _built(toy_data, cfg, tmp_path, "baseline")
    with pytest.raises(BenchError, match="method baseline cannot condition on a spatial grid"):
        sample_large(baseline, cfg, torch.zeros(1, 2, 2, 4), LargeImageParams(k=2), 0, CPU)
    with pytest.raises(BenchError, match="sampler 'euler' does not keep samples as x_t"):
        check_spatial(type(_built(toy_data, cfg, tmp_path).method), SSL, "euler")
