"""Training and sampling throughput on one GPU, measured side by side in one run (a benchmark, not a test).

Needs the U-Net's dependencies only (torch, diffusers, bench): neither Ray nor the Inception weights, so it runs
on a bare GPU machine. Sections, each printed as a markdown table as soon as it is measured:

1. The training step of bench's own loop (`bench.engine.train.Trainer`: the baseline method, min-SNR loss,
   AdamW (fused on CUDA), clipping, EMA) for the `paper` U-Net at 64 px, grayscale as in Nair 2024, at each batch
   size, in fp32, bf16 autocast, bf16 + channels_last, and (last, at the middle batch size) with the U-Net
   compiled (`torch.compile`, default mode and CUDA graphs, its compile time the first step's): ms a step,
   images/s, the share of the device's bf16 matrix rate (the FLOPs of one step, counted by torch's
   FlopCounterMode, over the rate a large bf16 matmul reaches).
2. Sampling (bench's sampler with classifier-free guidance, `[sample]` defaults): images/s per precision.
3. Packing: four trainings of the default suite's model (`small` U-Net, 16 px) at once, one process each on the
   one GPU, against the same four one after another.
4. The Nair 2024 protocol (6 methods, 20 epochs of the Kather 2016 train split, 15 generation seeds of 10 images
   per class) extrapolated from the fastest eager setting, in GPU-hours: one trained model per method, and the
   powered design (6 per method). Scoring is not included.

    python benchmarks/gpu_throughput.py [--device cuda] [--batches 4 64 256] [--steps 20] [--no-compile]
                                       [--no-packing] [--compiled-only] [--profile]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.multiprocessing as mp
from torch.utils.flop_counter import FlopCounterMode

from bench.config import load_config
from bench.engine.sample import generation_labels, sample_model_space
from bench.engine.train import Trainer, build
from bench.testing import toy_data

PRECISIONS = {  # name -> ([execution] bf16, channels_last, torch.compile mode of the U-Net or None)
    "fp32": (False, False, None), "bf16": (True, False, None), "bf16+channels_last": (True, True, None),
    "bf16+channels_last+compiled": (True, True, "default"), "bf16+compiled": (True, False, "default"),
    "bf16+compiled+CUDA graphs": (True, False, "reduce-overhead")}
KATHER_TRAIN_IMAGES = 3500      # 70% of Kather 2016's 5000 tiles (bench's default split)
NAIR_METHODS, NAIR_EPOCHS, NAIR_SEEDS, NAIR_SCORED_CLASSES, NAIR_PER_CLASS = 6, 20, 15, 7, 10
POWERED_MODELS = 6              # trained models per method for an exact sign-flip test to reach p < 0.05


def suite(device: str, size: str, image_size: int, batch: int, precision: str, grayscale: bool = True):
    bf16, channels_last, _ = PRECISIONS[precision]
    return load_config(None, None, {
        "model": {"size": size}, "data": {"image_size": image_size, "grayscale": grayscale},
        "train": {"batch_size": batch}, "sample": {"batch_size": batch},
        "execution": {"executor": "local", "device": device, "bf16": bf16, "channels_last": channels_last}})


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def trainer(cfg, precision: str, device: torch.device, num_classes: int = 8) -> Trainer:
    data = toy_data(num_classes=num_classes, per_class=max(4, cfg.train.batch_size // num_classes + 1),
                    size=cfg.data.image_size, channels=1 if cfg.data.grayscale else 3)
    torch.manual_seed(0)
    built = build(cfg, "baseline", data, device)
    if PRECISIONS[precision][2]:
        built.model.unet = torch.compile(built.model.unet, mode=PRECISIONS[precision][2])
    built.model.train()
    return Trainer(cfg, built, data, 0, device)


def time_steps(run: Trainer, steps: int, device: torch.device) -> tuple[float, float]:
    """(seconds of the first step, median seconds a step over `steps` more), timed in blocks of 5 steps."""
    sync(device)
    start = time.perf_counter()
    run.step(0)
    sync(device)
    first = time.perf_counter() - start
    blocks = []
    for block in range(max(1, steps // 5)):
        start = time.perf_counter()
        for k in range(5):
            run.step(1 + 5 * block + k)
        sync(device)
        blocks.append((time.perf_counter() - start) / 5)
    return first, statistics.median(blocks)


def step_flops(run: Trainer) -> int:
    with FlopCounterMode(display=False) as counter:
        run.step(10_000)
    return counter.get_total_flops()


def matmul_rate(device: torch.device, n: int = 8192) -> float:
    """FLOP/s of a large bf16 matmul on `device`: the ceiling the step's share is measured against."""
    if device.type != "cuda":
        n = 1024
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    a @ b
    sync(device)
    start, reps = time.perf_counter(), 20 if device.type == "cuda" else 2
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - start)


def training_table(args, device, peak: float, precisions: list[str], batches: list[int]) -> dict:
    print(f"\n### Training step, `{args.size}` U-Net, {args.image_size} px grayscale ({device_name(device)})\n")
    print("| precision | batch | first step (s) | ms / step | images / s | share of bf16 matmul rate |")
    print("|---|---|---|---|---|---|")
    best = {}
    for precision in precisions:
        for batch in batches:
            cfg = suite(args.device, args.size, args.image_size, batch, precision)
            try:
                run = trainer(cfg, precision, device)
                first, per_step = time_steps(run, args.steps, device)
                flops = step_flops(run)
            except torch.cuda.OutOfMemoryError:
                print(f"| {precision} | {batch} | out of memory | | | |")
                continue
            print(f"| {precision} | {batch} | {first:.1f} | {per_step * 1e3:.1f} | {batch / per_step:,.0f} | "
                  f"{flops / per_step / peak:.1%} |", flush=True)
            if batch / per_step > best.get("images_per_s", 0):
                best = {"precision": precision, "batch": batch, "images_per_s": batch / per_step}
            del run
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return best


def sampling_table(args, device) -> dict:
    print(f"\n### Sampling, `{args.size}` U-Net, {args.image_size} px grayscale, {args.sample_images} images a call\n")
    print("| precision | sampler steps | guidance | images / s |")
    print("|---|---|---|---|")
    best = {}
    for precision in [p for p in PRECISIONS if not PRECISIONS[p][2]]:
        cfg = suite(args.device, args.size, args.image_size, args.sample_images, precision)
        run = trainer(cfg, precision, device)
        run.built.model.eval()
        labels = generation_labels(range(NAIR_SCORED_CLASSES), max(1, args.sample_images // NAIR_SCORED_CLASSES))
        sample_model_space(run.built, cfg, labels[:2], 0, device)  # warm-up
        sync(device)
        start = time.perf_counter()
        sample_model_space(run.built, cfg, labels, 1, device)
        sync(device)
        rate = len(labels) / (time.perf_counter() - start)
        print(f"| {precision} | {cfg.sample.steps} | {cfg.sample.guidance:g} | {rate:,.0f} |", flush=True)
        if rate > best.get("images_per_s", 0):
            best = {"precision": precision, "images_per_s": rate, "steps": cfg.sample.steps}
    return best


def _packed_worker(device: str, steps: int, ready, go, done) -> None:
    cfg = suite(device, "small", 16, 32, "bf16+channels_last", grayscale=False)
    run = trainer(cfg, "bf16+channels_last", torch.device(device))
    run.step(0)
    sync(torch.device(device))
    ready.put(1)
    go.wait()
    for k in range(steps):
        run.step(1 + k)
    sync(torch.device(device))
    done.put(time.perf_counter())


def packing_table(args, device) -> None:
    """Four trainings at once (a process each) against one after another, same steps each."""
    steps, n = args.pack_steps, 4
    ctx = mp.get_context("spawn")
    ready, done, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    workers = [ctx.Process(target=_packed_worker, args=(args.device, steps, ready, go, done)) for _ in range(n)]
    for w in workers:
        w.start()
    for _ in workers:
        ready.get()
    start = time.perf_counter()
    go.set()
    packed = max(done.get() for _ in workers) - start
    for w in workers:
        w.join()
    cfg = suite(args.device, "small", 16, 32, "bf16+channels_last", grayscale=False)
    run = trainer(cfg, "bf16+channels_last", device)
    run.step(0)
    sync(device)
    start = time.perf_counter()
    for k in range(n * steps):
        run.step(1 + k)
    sync(device)
    serial = time.perf_counter() - start
    print(f"\n### Four trainings on one device, `small` U-Net, 16 px, batch 32, {steps} steps each\n")
    print("| | seconds | steps / s |\n|---|---|---|")
    print(f"| one after another | {serial:.2f} | {n * steps / serial:,.0f} |")
    print(f"| packed, a process each | {packed:.2f} | {n * steps / packed:,.0f} |")
    print(f"\npacked / one after another: {serial / packed:.2f}x the steps a second", flush=True)


def protocol_table(train: dict, sample: dict) -> None:
    steps = NAIR_EPOCHS * KATHER_TRAIN_IMAGES // train["batch"]
    train_h = steps * train["batch"] / train["images_per_s"] / 3600
    images = NAIR_SEEDS * NAIR_SCORED_CLASSES * NAIR_PER_CLASS
    sample_h = images / sample["images_per_s"] / 3600
    one = NAIR_METHODS * (train_h + sample_h)
    print(f"\n### Nair 2024 protocol, extrapolated ({train['precision']}, batch {train['batch']}; sampling "
          f"{sample['precision']}, {sample['steps']} steps; scoring not included)\n")
    print("| | per trained model | 6 methods x 1 model | 6 methods x 6 models |\n|---|---|---|---|")
    print(f"| GPU-hours | {train_h + sample_h:.3f} ({steps} steps, {images} images) | {one:.2f} | "
          f"{one * POWERED_MODELS:.2f} |", flush=True)


def profile_table(args, device) -> None:
    """Where a bf16 training step's time goes: torch.profiler's top operators by self CPU time, over 10 steps."""
    from torch.profiler import ProfilerActivity, profile
    cfg = suite(args.device, args.size, args.image_size, args.batches[0], "bf16")
    run = trainer(cfg, "bf16", device)
    for k in range(3):
        run.step(k)
    sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for k in range(10):
            run.step(3 + k)
        sync(device)
    print(f"\n### Profile of 10 bf16 training steps, batch {args.batches[0]}\n")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25), flush=True)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", default="paper", help="U-Net size (bench.models.unet.SIZES)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batches", type=int, nargs="+", default=[4, 64, 256])
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per setting")
    parser.add_argument("--sample-images", type=int, default=256)
    parser.add_argument("--pack-steps", type=int, default=50)
    parser.add_argument("--no-compile", action="store_true", help="leave out the compiled U-Net")
    parser.add_argument("--no-packing", action="store_true", help="leave out the four packed trainings")
    parser.add_argument("--compiled-only", action="store_true", help="only the compiled U-Net's training steps")
    parser.add_argument("--profile", action="store_true", help="only a profile of the bf16 training step")
    args = parser.parse_args()
    device = torch.device(args.device)
    peak = matmul_rate(device)
    print(f"{device_name(device)}, torch {torch.__version__}: a large bf16 matmul runs at {peak / 1e12:,.1f} TFLOP/s")
    eager = [p for p in PRECISIONS if not PRECISIONS[p][2]]
    compiled = [p for p in PRECISIONS if PRECISIONS[p][2]]
    if args.profile:
        profile_table(args, device)
        return
    if args.compiled_only:
        training_table(args, device, peak, compiled, args.batches)
        return
    train = training_table(args, device, peak, eager, args.batches)
    sample = sampling_table(args, device)
    if not args.no_packing:
        packing_table(args, device)
    protocol_table(train, sample)
    if not args.no_compile:  # last: its compilation can take minutes, and everything else is printed by then
        training_table(args, device, peak, compiled, args.batches[1:2] or args.batches)


if __name__ == "__main__":
    main()
