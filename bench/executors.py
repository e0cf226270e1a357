"""Executors run task functions: in-process (`local`) or as Ray tasks (`ray`), one interface.

`submit(fn, *args, kind=...)` returns a handle; `wait(handles, timeout)` returns the finished ones
(possibly none, after `timeout` seconds); `result(handle)` their return value or raises their error;
`cancel(handles)` stops unfinished ones. Ray retries a task whose worker or node was lost
(`max_retries`) but never a Python exception: tasks record their own deterministic failures.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from bench.config import ExecutionConfig
from bench.errors import BenchError

# Task kinds that run a network and so get `num_gpus` each; data preparation runs in the driver.
GPU_KINDS = ("expert", "train", "eval")


@dataclass(eq=False)  # a handle: hashed by identity, like a Ray ObjectRef
class _LocalTask:
    fn: Callable
    args: tuple
    ran: bool = False
    value: object = None
    error: BaseException | None = None


class LocalExecutor:
    """Runs tasks one at a time in this process, in submission order, when waited for: for tests,
    debugging and `--executor local`. Ctrl-C interrupts the running task like any Python code."""

    name = "local"

    def __init__(self, cfg: ExecutionConfig):
        self.cfg = cfg

    def describe(self) -> str:
        return "local executor: one task at a time in this process"

    def submit(self, fn, *args, kind: str = "task") -> _LocalTask:
        return _LocalTask(fn, args)

    def wait(self, handles: list, timeout: float | None = None) -> list:
        finished = [h for h in handles if h.ran]
        if finished or not handles:
            return finished
        task = handles[0]
        try:
            task.value = task.fn(*task.args)
        except Exception as err:  # surfaced by result(), like a Ray task's error
            task.error = err
        task.ran = True
        return [task]

    def result(self, handle: _LocalTask):
        if handle.error is not None:
            raise handle.error
        return handle.value

    def cancel(self, handles: list) -> None:
        pass  # nothing runs behind the caller's back

    def shutdown(self) -> None:
        pass


class RayExecutor:
    """Ray Core tasks on a private local instance (default) or an existing cluster (`address`)."""

    name = "ray"

    def __init__(self, cfg: ExecutionConfig):
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import ray
        self.ray = ray
        self.cfg = cfg
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            # Recent Ray no longer hides GPUs from tasks that reserve none (ray-project/ray#54868); this
            # restores it, so with num_gpus = 0 tasks run on CPU instead of sharing GPU 0 unscheduled.
            # A local instance inherits this process's environment; a cluster's workers get it from
            # the job (a runtime_env costs fresh worker processes, so only there).
            os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "1")
            # Ray starts workers at nice 15: on a machine shared with other jobs they would get only the
            # CPU left over. The tasks are the work here, so a local instance runs them at normal priority.
            os.environ.setdefault("RAY_worker_niceness", "0")
            job_env = {"env_vars": {"RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "1"}} if cfg.address else None
            try:
                # "local" starts a private instance even when a `ray start` cluster runs here.
                ray.init(address=cfg.address or "local", include_dashboard=False, logging_level="WARNING",
                         log_to_driver=True, runtime_env=job_env)
            except ConnectionError as err:
                raise BenchError(f"cannot reach the Ray cluster at {cfg.address!r} ({err}); start it with "
                                 "`ray start --head` or drop --address to run locally") from None
        self._check_resources()
        self._remote = {}

    def _check_resources(self) -> None:
        total = self.ray.cluster_resources()
        gpus, cpus = total.get("GPU", 0), total.get("CPU", 0)
        if self.cfg.num_gpus > gpus:
            self._fail(f"execution.num_gpus = {self.cfg.num_gpus} but the Ray cluster has {gpus:g} GPUs; "
                       "set execution.num_gpus = 0 to run on CPU, or add GPU nodes")
        if self.cfg.num_cpus > cpus:
            self._fail(f"execution.num_cpus = {self.cfg.num_cpus} but the Ray cluster has {cpus:g} CPUs; "
                       "lower execution.num_cpus")
        if self.cfg.device.startswith("cuda") and self.cfg.num_gpus == 0:
            self._fail(f"execution.device = {self.cfg.device!r} needs execution.num_gpus > 0 under Ray "
                       "(tasks that reserve no GPU see none); set execution.num_gpus = 1")

    def _fail(self, message: str) -> None:
        self.shutdown()
        raise BenchError(message)

    def describe(self) -> str:
        total = self.ray.cluster_resources()
        where = f"cluster at {self.cfg.address}" if self.cfg.address else "local instance"
        text = (f"Ray {where}: {len([n for n in self.ray.nodes() if n['Alive']])} node(s), "
                f"{total.get('CPU', 0):g} CPUs, {total.get('GPU', 0):g} GPUs; per task "
                f"{self.cfg.num_cpus:g} CPU, {self.cfg.num_gpus:g} GPU, {self.cfg.threads} thread(s)")
        if total.get("GPU", 0) and not self.cfg.num_gpus:
            text += " (GPUs unused: set execution.num_gpus = 1)"
        return text

    def _options(self, kind: str) -> dict:
        return {"num_cpus": self.cfg.num_cpus, "num_gpus": self.cfg.num_gpus if kind in GPU_KINDS else 0,
                "max_retries": self.cfg.max_retries, "retry_exceptions": False}

    def submit(self, fn, *args, kind: str = "task"):
        key = (fn, kind)
        if key not in self._remote:
            self._remote[key] = self.ray.remote(fn).options(**self._options(kind))
        return self._remote[key].remote(*args)

    def wait(self, handles: list, timeout: float | None = None) -> list:
        ready, _ = self.ray.wait(list(handles), num_returns=1, timeout=timeout)
        if ready:  # collect everything else already finished too
            ready, _ = self.ray.wait(list(handles), num_returns=len(handles), timeout=0)
        return ready

    def result(self, handle):
        try:
            return self.ray.get(handle)
        except self.ray.exceptions.RayTaskError as err:
            # The task's own exception (e.g. a BenchError), not Ray's wrapper with its traceback text.
            cause = getattr(err, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None
            raise

    def cancel(self, handles: list) -> None:
        for handle in handles:
            try:
                self.ray.cancel(handle, force=True)  # frees the cluster's workers now
            except Exception:  # already finished, or the cluster is going away: nothing to stop
                pass

    def shutdown(self) -> None:
        if self._owns_ray:
            self.ray.shutdown()


def make_executor(cfg: ExecutionConfig):
    return {"local": LocalExecutor, "ray": RayExecutor}[cfg.executor](cfg)
