"""The same grid under the local executor and under Ray on this machine (a benchmark, not a test).

1. Wall time of `run_suite` for a grid of >= 4 small runs (tiny preset, longer training, SSIM only),
   each executor in a fresh results store, Ray's start-up included: the user's wait. The same
   config for both: one torch thread per task; the local executor runs one task at a time, Ray one
   per core. `--local-threads 2` adds local rows with more threads per task (on a machine shared
   with other jobs, oversubscribed threads can be far slower). Target: Ray <= 0.8x local.
2. Ray's scheduling overhead per task: a no-op task's round trip (submit, run, get; one at a
   time) and its amortised cost when many are in flight.

    python benchmarks/ray_vs_local.py [--runs 4] [--steps 400] [--noop 300] [--local-threads 1 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # threads come from execution.threads, per task
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.config import load_config  # noqa: E402
from bench.engine.runner import run_suite  # noqa: E402


def grid_config(executor: str, runs: int, steps: int, threads: int):
    methods = ["baseline", "drift"]
    return load_config(None, "tiny", {
        "suite": {"name": f"{executor}-{threads}", "methods": methods, "seeds": 1,
                  "train_seeds": -(-runs // len(methods))},
        "train": {"steps": steps, "checkpoint_every": 50, "log_every": 10},
        "sample": {"steps": 10}, "metrics": {"names": ["ssim"]},
        "execution": {"executor": executor, "device": "cpu", "threads": threads}})


def time_grid(executor: str, runs: int, steps: int, threads: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as results:
        cfg = grid_config(executor, runs, steps, threads)
        start = time.perf_counter()
        summary = run_suite(cfg, Path(results), Console(stderr=True, quiet=True))
        elapsed = time.perf_counter() - start
    if summary.failed or summary.trained != runs:
        raise SystemExit(f"{executor}: the grid did not finish cleanly: {summary}")
    return elapsed, summary.trained


def noop() -> None:
    return None


def ray_overhead(n: int) -> dict:
    import ray
    start = time.perf_counter()
    ray.init(address="local", include_dashboard=False, logging_level="WARNING")
    init_s = time.perf_counter() - start
    task = ray.remote(num_cpus=1, max_retries=3)(noop)
    ray.get([task.remote() for _ in range(os.cpu_count() or 1)])  # workers started and warm
    one_at_a_time = []
    for _ in range(n):
        t0 = time.perf_counter()
        ray.get(task.remote())
        one_at_a_time.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    ray.get([task.remote() for _ in range(n)])
    in_flight = (time.perf_counter() - t0) / n
    ray.shutdown()
    return {"init_s": init_s, "round_trip_ms": 1000 * statistics.median(one_at_a_time),
            "amortised_ms": 1000 * in_flight}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4, help="trained models in the grid (>= 4)")
    parser.add_argument("--steps", type=int, default=400, help="training steps per run")
    parser.add_argument("--noop", type=int, default=300, help="no-op tasks for the overhead measurement")
    parser.add_argument("--local-threads", type=int, nargs="+", default=[1], help="torch threads per local task")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    console = Console()
    console.print(f"grid: {args.runs} runs x {args.steps} steps (tiny preset, 1 evaluation each) on {cores} cores")

    rows = [("local", threads) for threads in args.local_threads] + [("ray", 1)]
    wall = {}
    for executor, threads in rows:
        wall[executor, threads], _ = time_grid(executor, args.runs, args.steps, threads)
        console.print(f"  {executor:5s} threads/task={threads}: {wall[executor, threads]:.1f} s")
    overhead = ray_overhead(args.noop)

    table = Table("executor", "threads/task", "wall s", "Ray / this", title="same grid, fresh store each")
    for (executor, threads), seconds in wall.items():
        table.add_row(executor, str(threads), f"{seconds:.1f}", f"{wall['ray', 1] / seconds:.2f}")
    console.print(table)
    best_local = min(s for (e, _), s in wall.items() if e == "local")
    ratio = wall["ray", 1] / best_local
    console.print(f"Ray / fastest local = {ratio:.2f} (target <= 0.80: {'met' if ratio <= 0.8 else 'NOT met'})")
    console.print(f"Ray start-up {overhead['init_s']:.1f} s; no-op task round trip "
                  f"{overhead['round_trip_ms']:.2f} ms one at a time, {overhead['amortised_ms']:.2f} ms "
                  f"each with {args.noop} in flight")


if __name__ == "__main__":
    main()
