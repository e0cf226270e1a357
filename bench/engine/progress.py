"""Live progress of a grid: tasks write a small `progress.json` next to their output; the driver polls.

A file belongs to one `bench run` invocation (its `token`), so a file left by an earlier, interrupted
invocation or by another process on the same store never counts as "running" here. When a task
ends, its file stays as a record of the attempt that finished it: state, pid, host and Ray node.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Group
from rich.table import Table
from rich.text import Text

from bench.core.store import atomic_write_json
from bench.models.expert import ROLES

TASK_KINDS = (*ROLES, "pretrain", "train", "eval")   # every kind of task the runner schedules


def _ray_node() -> str | None:
    ray = sys.modules.get("ray")  # inside a Ray worker; never import Ray just to ask
    if ray is not None and ray.is_initialized():
        return ray.get_runtime_context().get_node_id()
    return None


class ProgressWriter:
    """Task side: `start()`, then `step(done, total)` as often as you like (written at most every
    `every_s` seconds, so a fast GPU loop does not hammer a shared filesystem), then `finish(state)`."""

    def __init__(self, path: Path, token: str, every_s: float = 0.5):
        self.path, self.every_s, self._last = Path(path), every_s, 0.0
        self.record = {"token": token, "pid": os.getpid(), "host": socket.gethostname(), "node": _ray_node(),
                       "state": "running", "step": 0, "total": None, "from_step": None, "started": time.time()}

    def _write(self) -> None:
        self.record["time"] = self._last = time.time()
        atomic_write_json(self.path, self.record)

    def start(self) -> None:
        self._write()

    def step(self, done: int, total: int) -> None:
        if self.record["from_step"] is None:  # > 0: this attempt resumed a checkpoint
            self.record["from_step"] = done - 1
        self.record.update(step=done, total=total)
        if time.time() - self._last >= self.every_s:
            self._write()

    def finish(self, state: str) -> None:
        self.record["state"] = state
        self._write()


def read_progress(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):  # not written yet
        return None


@dataclass
class _Active:
    kind: str
    label: str
    progress: Path


class GridView:
    """Driver side: counts per task kind and the running tasks' steps, as a rich renderable. The
    runner updates it from its thread; rich's Live re-renders it from another, hence the lock."""

    def __init__(self, token: str, header: str = "", max_rows: int = 8):
        self.token, self.header, self.max_rows = token, header, max_rows
        self.counts = {k: {"done": 0, "failed": 0} for k in TASK_KINDS}
        self._active: dict[object, _Active] = {}
        self._lock = threading.Lock()

    def submitted(self, handle, kind: str, label: str, progress: Path) -> None:
        with self._lock:
            self._active[handle] = _Active(kind, label, progress)

    def finished(self, handle, ok: bool) -> None:
        with self._lock:
            task = self._active.pop(handle)
            self.counts[task.kind]["done" if ok else "failed"] += 1

    def count(self, kind: str, done: int = 0, failed: int = 0) -> None:
        """Tasks settled without running (found finished in the store, or skipped after a failure)."""
        with self._lock:
            self.counts[kind]["done"] += done
            self.counts[kind]["failed"] += failed

    def __rich__(self) -> Group:
        with self._lock:
            active = list(self._active.values())
            counts = {k: dict(v) for k, v in self.counts.items()}
        running = []
        for task in active:
            record = read_progress(task.progress)
            if record and record.get("token") == self.token and record.get("state") == "running":
                running.append((task, record))
        grid = Table("task", "queued", "running", "done", "failed", title=self.header or None,
                     title_justify="left", box=None, pad_edge=False)
        for kind in TASK_KINDS:
            n_running = sum(1 for t, _ in running if t.kind == kind)
            n_queued = sum(1 for t in active if t.kind == kind) - n_running
            c = counts[kind]
            if n_queued or n_running or c["done"] or c["failed"]:
                grid.add_row(kind, str(n_queued), str(n_running), str(c["done"]),
                             Text(str(c["failed"]), style="red" if c["failed"] else ""))
        now = Table("running", "progress", "where", box=None, pad_edge=False, show_header=bool(running))
        for task, record in running[:self.max_rows]:
            step = f"step {record['step']}/{record['total']}" if record.get("total") else "started"
            if record.get("from_step"):
                step += f" (resumed at {record['from_step']})"
            node = f" node {record['node'][:8]}" if record.get("node") else ""
            now.add_row(task.label, step, f"{record['host']}{node} pid {record['pid']}")
        if len(running) > self.max_rows:
            now.add_row(f"... and {len(running) - self.max_rows} more", "", "")
        return Group(grid, now)
