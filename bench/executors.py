"""Executors run task functions: in-process (`local`) or as Ray tasks (`ray`), one interface.

`submit(fn, *args, kind=...)` returns a handle; `wait(handles)` returns the finished ones;
`result(handle)` their return value. Ray retries a task whose worker or node was lost
(`max_retries`) but never a Python exception: tasks record their own deterministic failures.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from bench.config import ExecutionConfig
from bench.errors import BenchError


@dataclass
class _Done:
    value: object = None
    error: BaseException | None = None


class LocalExecutor:
    """Runs each task when submitted, in this process; for tests, debugging and `--executor local`."""

    name = "local"

    def __init__(self, cfg: ExecutionConfig):
        self.cfg = cfg

    def submit(self, fn, *args, kind: str = "task"):
        try:
            return _Done(value=fn(*args))
        except Exception as err:  # surfaced by result(), like a Ray task's error
            return _Done(error=err)

    def wait(self, handles: list) -> list:
        return list(handles)

    def result(self, handle):
        if handle.error is not None:
            raise handle.error
        return handle.value

    def shutdown(self) -> None:
        pass


class RayExecutor:
    """Ray Core tasks on a local instance (default) or an existing cluster (`address`)."""

    name = "ray"

    def __init__(self, cfg: ExecutionConfig):
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import ray
        self.ray = ray
        self.cfg = cfg
        if not ray.is_initialized():
            try:
                if cfg.address:
                    ray.init(address=cfg.address, include_dashboard=False, logging_level="WARNING",
                             log_to_driver=True)
                else:
                    ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=True,
                             runtime_env={"env_vars": {"RAY_AUTH_MODE": "disabled"}})
            except ConnectionError as err:
                raise BenchError(f"cannot reach the Ray cluster at {cfg.address!r} ({err}); start it with "
                                 "`ray start --head` or drop --address to run locally") from None
        self._remote = {}

    def _options(self, kind: str) -> dict:
        # Shared artefacts are light: give the GPUs to training and evaluation only.
        gpus = self.cfg.num_gpus if kind in ("train", "eval") else 0
        return {"num_cpus": self.cfg.num_cpus, "num_gpus": gpus, "max_retries": self.cfg.max_retries,
                "retry_exceptions": False}

    def submit(self, fn, *args, kind: str = "task"):
        key = (fn, kind)
        if key not in self._remote:
            self._remote[key] = self.ray.remote(fn).options(**self._options(kind))
        return self._remote[key].remote(*args)

    def wait(self, handles: list) -> list:
        done, _ = self.ray.wait(list(handles), num_returns=1)
        return done

    def result(self, handle):
        return self.ray.get(handle)

    def shutdown(self) -> None:
        self.ray.shutdown()


def make_executor(cfg: ExecutionConfig):
    return {"local": LocalExecutor, "ray": RayExecutor}[cfg.executor](cfg)
