"""Executors run task functions: in-process (`local`) or as Ray tasks (`ray`), one interface.

`submit(fn, *args, kind=...)` returns a handle; `wait(handles, timeout)` returns the finished ones
(possibly none, after `timeout` seconds); `result(handle)` their return value or raises their error;
`cancel(handles)` stops unfinished ones. Ray retries a task whose worker or node was lost
(`max_retries`) but never a Python exception: tasks record their own deterministic failures.

A private Ray instance is reachable from this machine only: every Ray process binds the loopback
interface, and its services demand a random token that only this process and its children know.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bench.config import Config, ExecutionConfig
from bench.core.errors import BenchError
from bench.engine.gpu_share import GpuShare, decide_share
from bench.engine.progress import TASK_KINDS


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

    def __init__(self, cfg: ExecutionConfig, py_modules: tuple[str, ...] = ()):
        self.cfg = cfg  # plug-ins are loaded in this process already

    def describe(self) -> str:
        return "local executor: one task at a time in this process"

    def plan_gpus(self, cfg: Config, data_path: Path) -> None:
        pass  # tasks run in this process, on execution.device: nothing to reserve

    def submit(self, fn, *args, kind: str = "task", name: str = "") -> _LocalTask:
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
    """Ray Core tasks on an existing cluster (`address`, else $RAY_ADDRESS, as `ray job submit` sets it)
    or else on a private instance on this machine. `py_modules`: local files or folders that Ray ships
    to every worker of this job and puts on its `sys.path` (so no node needs a shared path to them)."""

    name = "ray"

    def __init__(self, cfg: ExecutionConfig, py_modules: tuple[str, ...] = ()):
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        self.address = ray_address(cfg)
        import ray
        self.ray = ray
        self.cfg = cfg
        self._owns_ray = not ray.is_initialized()
        self._undo_private_settings = None
        if self._owns_ray and not self.address:
            self._undo_private_settings = _secure_private_instance()
        if self._owns_ray:
            # Recent Ray no longer hides GPUs from tasks that reserve none (ray-project/ray#54868); this
            # restores it, so with num_gpus = 0 tasks run on CPU instead of sharing GPU 0 unscheduled.
            # A local instance inherits this process's environment; a cluster's workers get it from
            # the job (a runtime_env costs fresh worker processes, so only where needed).
            os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "1")
            # Ray starts workers at nice 15: on a machine shared with other jobs they would get only the
            # CPU left over. The tasks are the work here, so a local instance runs them at normal priority.
            os.environ.setdefault("RAY_worker_niceness", "0")
            job_env = {"env_vars": {"RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "1"}} if self.address else {}
            if py_modules:  # only a job's runtime_env uploads local paths, a task's cannot
                job_env["py_modules"] = list(py_modules)
            try:
                # "local" starts a private instance even when a `ray start` cluster runs here.
                ray.init(address=self.address or "local", include_dashboard=False, logging_level="WARNING",
                         log_to_driver=True, runtime_env=job_env or None)
            except ConnectionError as err:
                source = "--address" if cfg.address else "$RAY_ADDRESS"
                raise BenchError(f"cannot reach the Ray cluster at {self.address!r} (from {source}: {err}); "
                                 f"start it with `ray start --head`, or drop {source} to run locally") from None
        self._check_resources()
        self._remote = {}
        self.gpus = GpuShare(0.0 if cfg.num_gpus == "auto" else float(cfg.num_gpus), 0, 0, "execution.num_gpus")

    def _check_resources(self) -> None:
        total = self.ray.cluster_resources()
        try:
            check_ray_resources(self.cfg, total.get("GPU", 0), total.get("CPU", 0), "the Ray cluster")
        except BenchError:
            self.shutdown()
            raise

    def describe(self) -> str:
        total = self.ray.cluster_resources()
        where = (f"cluster at {self.address}" if self.address else
                 "private instance (loopback only, token authentication)" if self._undo_private_settings else
                 "instance started by the caller")
        text = (f"Ray {where}: {len([n for n in self.ray.nodes() if n['Alive']])} node(s), "
                f"{total.get('CPU', 0):g} CPUs, {total.get('GPU', 0):g} GPUs; per task "
                f"{self.cfg.num_cpus:g} CPU, {self.gpus.num_gpus:.3g} GPU, {self.cfg.threads} thread(s)")
        if total.get("GPU", 0):
            text += (f" ({self.gpus.reason})" if self.gpus.num_gpus else
                     f" (GPUs unused: {self.gpus.reason}; set execution.num_gpus = \"auto\")")
        return text

    def gpu_memory(self) -> int:
        """One GPU's memory in bytes, read by a task that reserves a whole GPU; 0 if it sees no CUDA."""
        return self.ray.get(self.ray.remote(_gpu_memory).options(num_gpus=1, num_cpus=0, name="gpu-memory").remote())

    def plan_gpus(self, cfg: Config, data_path: Path) -> None:
        """Decide what every network task reserves from now on: execution.num_gpus, or its "auto" share
        for the suite `cfg` on its prepared data (bench/engine/gpu_share.py)."""
        self.gpus = decide_share(cfg, self.ray.cluster_resources().get("GPU", 0), self.gpu_memory, data_path)

    def _options(self, kind: str) -> dict:
        # Every scheduled task kind runs a network and so gets its GPU share; any other work gets none.
        return {"num_cpus": self.cfg.num_cpus, "num_gpus": self.gpus.num_gpus if kind in TASK_KINDS else 0,
                "max_retries": self.cfg.max_retries, "retry_exceptions": False}

    def submit(self, fn, *args, kind: str = "task", name: str = ""):
        """`name`: what `ray list tasks` and the dashboard show for this task."""
        if fn not in self._remote:
            self._remote[fn] = self.ray.remote(fn)
        return self._remote[fn].options(**self._options(kind), name=name or kind).remote(*args)

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
        if self._undo_private_settings:
            self._undo_private_settings()
            self._undo_private_settings = None


def check_ray_resources(cfg: ExecutionConfig, gpus: float, cpus: float, where: str) -> None:
    """BenchError unless a Ray task's resources (execution.num_gpus, num_cpus, device) fit `where`, which
    has `gpus` and `cpus`: Ray would wait forever for a task that fits nowhere."""
    auto = cfg.num_gpus == "auto"
    if not auto and cfg.num_gpus > gpus:
        raise BenchError(f"execution.num_gpus = {cfg.num_gpus:g} but {where} has {gpus:g} GPUs; "
                         "set execution.num_gpus = \"auto\" (or 0 to run on CPU), or add GPU nodes")
    if cfg.num_cpus > cpus:
        raise BenchError(f"execution.num_cpus = {cfg.num_cpus:g} but {where} has {cpus:g} CPUs; lower execution.num_cpus")
    if cfg.device.startswith("cuda") and auto and not gpus:
        raise BenchError(f"execution.device = {cfg.device!r} but {where} has no GPUs; set execution.device = "
                         "\"auto\" (or \"cpu\"), or add GPU nodes")
    if cfg.device.startswith("cuda") and cfg.num_gpus == 0:
        raise BenchError(f"execution.device = {cfg.device!r} needs execution.num_gpus > 0 under Ray "
                         "(tasks that reserve no GPU see none); set execution.num_gpus = \"auto\"")
    index = int(cfg.device.partition(":")[2] or 0) if cfg.device.startswith("cuda") else 0
    seen = 1 if auto else max(cfg.num_gpus, 1)   # "auto" reserves at most one GPU per task
    if index >= seen:
        raise BenchError(f"execution.device = {cfg.device!r}, but a Ray task sees only the {seen:g} GPU(s) it "
                         "reserves (execution.num_gpus), as cuda:0 and up; set execution.device = \"cuda\"")


def _gpu_memory() -> int:
    import torch
    return torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available() else 0


def check_execution(cfg: ExecutionConfig) -> None:
    """Planning, before anything is written: refuse execution settings no task could run with. Under Ray
    (`check_ray_resources`) on a private instance, whose resources are this machine's; a cluster's are
    checked when bench joins it. On this machine (the local executor, a private instance) an
    execution.device = "cuda[:N]" needs CUDA with that GPU."""
    on_this_machine = cfg.executor == "local" or not ray_address(cfg)
    if not (on_this_machine or cfg.device.startswith("cuda")):
        return
    import torch
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if cfg.executor == "ray":
        check_ray_resources(cfg, count if on_this_machine else float("inf"),
                            (os.cpu_count() or 1) if on_this_machine else float("inf"),
                            "this machine (bench starts a private Ray instance on it)")
    if not (on_this_machine and cfg.device.startswith("cuda")):
        return
    index = int(cfg.device.partition(":")[2] or 0)
    if index >= count:
        has = f"has {count} GPU(s), cuda:0 to cuda:{count - 1}" if count else "has no CUDA GPU"
        raise BenchError(f"execution.device = {cfg.device!r}, but this machine {has}; set execution.device = "
                         "\"auto\" (or \"cpu\")")


def ray_address(cfg: ExecutionConfig) -> str:
    """The cluster to join: --address (or execution.address), then $RAY_ADDRESS; "" = a private instance."""
    return cfg.address or os.environ.get("RAY_ADDRESS", "")


# One token per process: Ray's token loader keeps the first token it reads for the process's lifetime.
_PRIVATE_TOKEN = secrets.token_hex(32)
_PRIVATE_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": _PRIVATE_TOKEN,
                "RAY_AUTH_TOKEN_PATH": None}


def _secure_private_instance() -> Callable[[], None]:
    """Settings for a private instance, in this process and the Ray processes it starts (they inherit
    its environment); returns what restores the previous ones, at shutdown.

    Single-machine mode (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, Ray's default on macOS and Windows) makes
    the node address 127.0.0.1: GCS, raylet, workers, agents and metrics bind loopback only. The token
    guards its services (all but the read-only metrics) against other users of this machine. It
    overrides an inherited RAY_AUTH_MODE=disabled (CI and cluster recipes set it, for clusters): nobody
    else needs to reach a private instance, so it never runs unauthenticated."""
    from ray._private import ray_constants
    from ray._raylet import AuthenticationTokenLoader, Config

    saved_env = {key: os.environ.get(key) for key in _PRIVATE_ENV}
    saved_cluster_mode = ray_constants.ENABLE_RAY_CLUSTER

    def apply(env: dict[str, str | None], cluster_mode: bool) -> None:
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        # This process's Ray read these settings when it was imported: make it read them again, as Ray's
        # own token set-up does (ray._private.authentication).
        ray_constants.ENABLE_RAY_CLUSTER = cluster_mode
        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()

    apply(_PRIVATE_ENV, False)
    return lambda: apply(saved_env, saved_cluster_mode)


def make_executor(cfg: ExecutionConfig, py_modules: tuple[str, ...] = ()):
    return {"local": LocalExecutor, "ray": RayExecutor}[cfg.executor](cfg, py_modules)
