"""The results store: paths, atomic writes, markers. The store on disk is the truth.

results/<suite>/
  plan.json                                  resolved config and grid
  cache/                                     data arrays, expert, encoders, reference stats
  runs/<dataset>/<method-variant>/train-seed=<k>/<run_id>/
      config.json checkpoint.safetensors train_log.jsonl DONE | FAILED
      eval/seed=<s>/ samples.npz grid.png metrics.json
  report/                                    leaderboard.md/.csv, report.html, figures/

metrics.json (one evaluation = one trained model x one generation seed):
{
  "schema": 1,
  "dataset": "synth-tissue", "method": "drift:delta=-0.05", "run_id": "ab12cd34",
  "train_seed": 0, "gen_seed": 3, "code_version": "0.1.0",
  "class_names": [...], "scored_classes": [...],
  "metrics": {"expert_acc": 0.41, "ssim": 0.12, "fid[expert]": 35.2, "kid[expert]": 0.012},
  "per_class": {"expert_recall": {"tumor": 0.5, ...}, "ssim": {"tumor": 0.1, ...}},
  "confusion": [[...]],               # rows = scored target classes, cols = predicted (all classes)
  "reference": {"expert_acc": 0.97, "ssim": 0.15},   # the same statistic on real test images
  "provenance": {"<metric>": {...}, ...}             # per metric: extractor, n_gen, n_ref, ...
}
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from bench.errors import BenchError

DONE = "DONE"
_UMASK = os.umask(0)
os.umask(_UMASK)
FAILED = "FAILED"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write via a temp file in the same folder and os.replace: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def read_json(path: str | Path):
    """A JSON file of the store; a torn or edited one is a BenchError naming it."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BenchError(f"{path} is corrupt ({err}); delete it and run `bench run` again to rebuild it") from None


def variant_dirname(variant: str) -> str:
    """A method variant string as a folder name (':' and ',' are awkward on some filesystems)."""
    return variant.replace(":", "@").replace(",", "+").replace("/", "_")


class SuiteStore:
    """Paths of one suite's store; every writer goes through `atomic_write_*`."""

    def __init__(self, results: str | Path, suite: str):
        self.root = Path(results) / suite

    @property
    def plan_path(self) -> Path:
        return self.root / "plan.json"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    def run_dir(self, dataset: str, variant: str, train_seed: int, run_id: str) -> Path:
        return (self.root / "runs" / dataset / variant_dirname(variant)
                / f"train-seed={train_seed}" / run_id)

    @staticmethod
    def eval_dir(run_dir: Path, gen_seed: int) -> Path:
        return run_dir / "eval" / f"seed={gen_seed}"

    def run_dirs(self):
        """Every run folder (holding config.json) in the store."""
        return sorted(p.parent for p in (self.root / "runs").glob("*/*/train-seed=*/*/config.json"))


class FileLock:
    """An exclusive advisory lock (flock) on `path`: one process at a time computes a shared
    artefact or trains a run; the others wait, then find the finished output."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd = None

    def __enter__(self):
        import fcntl
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        import fcntl
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
