"""execution.num_gpus = "auto": GPUs are used without being asked, small models packed several to a GPU.

The scheduling is tested on a CPU machine through Ray's declared GPU resources (ray.init(num_gpus=...)):
Ray assigns and isolates GPU ids the same way whether or not the devices exist."""
import dataclasses
import sys
import time

import pytest

from bench.config import ExecutionConfig
from bench.engine import gpu_share
from bench.engine.executors import RayExecutor
from bench.engine.gpu_share import GpuShare, decide_share, tasks_per_gpu, training_step_bytes

GiB = 2**30


def _with(cfg, **sections):
    return dataclasses.replace(cfg, **{k: dataclasses.replace(getattr(cfg, k), **v) for k, v in sections.items()})


def test_a_training_step_read_off_two_small_batches_equals_one_measured_at_its_batch(tiny_config, monkeypatch):
    cfg = _with(tiny_config, train={"batch_size": 12}, data={"image_size": 16})
    extrapolated = training_step_bytes(cfg, channels=3, bf16=True)
    monkeypatch.setattr(gpu_share, "PROBE_BATCHES", (12, 13))   # the first probe is the batch itself
    measured = training_step_bytes(cfg, channels=3, bf16=True)
    assert extrapolated == pytest.approx(measured, rel=0.005)
    bigger = training_step_bytes(_with(cfg, train={"batch_size": 48}), channels=3, bf16=True)
    fp32 = training_step_bytes(cfg, channels=3, bf16=False)
    assert gpu_share.CONTEXT_BYTES < measured < bigger and measured < fp32   # bf16 activations are half size


@pytest.mark.parametrize("task_gib, gpu_gib, most, expected", [
    (1.1, 141, 4, 4),      # the small U-Net at 16 px on an H200: capped
    (30.7, 80, 4, 2),      # the paper U-Net, batch 256, on an H100
    (30.7, 141, 8, 4),
    (100, 80, 4, 1),       # larger than the GPU: still one (the OOM names itself)
])
def test_tasks_per_gpu_fill_its_memory_up_to_the_cap(task_gib, gpu_gib, most, expected):
    assert tasks_per_gpu(int(task_gib * GiB), int(gpu_gib * GiB), most) == expected


def _data_path(tmp_path, make_data):
    path = tmp_path / "data.npz"
    make_data().save(path)
    return path


def _no_probe():
    raise AssertionError("the GPU's memory was probed where nothing needs it")


def test_auto_reserves_nothing_without_gpus_and_what_fits_with_them(tiny_config, tmp_path):
    from bench.testing import toy_data
    data = _data_path(tmp_path, toy_data)
    auto = _with(tiny_config, execution={"executor": "ray", "device": "auto"})
    assert decide_share(auto, 0, _no_probe, data).num_gpus == 0                       # a CPU cluster
    assert decide_share(_with(auto, execution={"device": "cpu"}), 2, _no_probe, data).num_gpus == 0
    assert decide_share(_with(auto, execution={"num_gpus": 0.5}), 2, _no_probe, data).num_gpus == 0.5
    unknown = decide_share(auto, 2, lambda: 0, data)
    assert unknown.num_gpus == 1 and "could not be read" in unknown.reason
    small = decide_share(auto, 2, lambda: 80 * GiB, data)
    assert small.num_gpus == 1 / auto.execution.gpu_tasks_max and small.task_bytes < 2 * GiB
    assert "4 task(s) per GPU" in small.reason
    assert decide_share(auto, 2, lambda: small.task_bytes, data).num_gpus == 1      # only one fits


def _network_task(barrier_dir: str, index: int, expected: int):
    """A stand-in for a training: the GPU ids Ray gave it, and whether `expected` tasks ran at once."""
    import os
    from pathlib import Path

    import ray
    folder = Path(barrier_dir)
    (folder / f"{index}").touch()
    deadline = time.time() + 60
    while len(list(folder.iterdir())) < expected and time.time() < deadline:
        time.sleep(0.05)
    return ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES"), len(list(folder.iterdir())) >= expected


def _data_preparation():
    import os

    import ray
    return ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")


@pytest.mark.timeout(300)
def test_eight_small_trainings_run_at_once_four_to_each_of_two_gpus(tiny_config, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    from ray import cloudpickle

    from bench.testing import toy_data
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import the test module
    monkeypatch.setenv("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "1")   # as bench's own instance sets it
    ray.init(address="local", num_cpus=8, num_gpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        executor = RayExecutor(ExecutionConfig())            # num_gpus = "auto", device = "auto"
        monkeypatch.setattr(executor, "gpu_memory", lambda: 80 * GiB)   # no real GPU answers the probe
        executor.plan_gpus(_with(tiny_config, execution={"executor": "ray", "device": "auto"}),
                           _data_path(tmp_path, toy_data))
        assert executor.gpus == GpuShare(0.25, executor.gpus.task_bytes, 80 * GiB, executor.gpus.reason)
        assert "4 task(s) per GPU" in executor.describe()
        barrier = tmp_path / "barrier"
        barrier.mkdir()
        handles = [executor.submit(_network_task, str(barrier), i, 8, kind="train") for i in range(8)]
        prep = executor.submit(_data_preparation, kind="task")
        results = [executor.result(h) for h in handles]
        assert all(all_at_once for _, _, all_at_once in results)   # with a whole GPU each, only two would
        ids = [tuple(gpu_ids) for gpu_ids, _, _ in results]
        assert sorted(ids) == [("0",)] * 4 + [("1",)] * 4 or sorted(ids) == [(0,)] * 4 + [(1,)] * 4
        assert all(visible == str(gpu_ids[0]) for gpu_ids, visible, _ in results)   # cuda:0 is its share
        assert executor.result(prep) == ([], "")                   # data preparation sees no GPU
    finally:
        ray.shutdown()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
