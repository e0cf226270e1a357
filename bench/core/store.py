"""The results store: paths, atomic writes, markers. The store on disk is the truth.

results/<suite>/                             scored on the test split; <suite>@val/ on the val split
  plan.json                                  resolved config and grid
  cache/                                     data arrays, expert, scorer, encoders, reference stats
  runs/<dataset>/<method-variant>/train-seed=<k>/<run_id>/
      config.json checkpoint.safetensors train_log.jsonl DONE | FAILED
      eval/seed=<s>/ samples.npz grid.png metrics.json
      large/<k=..,stride=..,interpolation>/   `bench sample-large`: large images (Graikos et al. 2024)
          seed=<s>/ large.npz large.png seams.json   the generated and the real image, side by side, seam scores
          patch_metrics.json                 patch FID/KID over every seed's crops
  report/                                    leaderboard.md/.csv, observations.csv, report.html, figures/

metrics.json (one evaluation = one trained model x one generation seed):
{
  "schema": 1,
  "dataset": "synth-tissue", "method": "my-method:scale=0.5", "run_id": "ab12cd34",
  "train_seed": 0, "gen_seed": 3, "code_version": "0.1.0",
  "class_names": [...], "scored_classes": [...],
  "metrics": {"acc[scorer]": 0.38, "acc[expert]": 0.41, "ssim": 0.12, "fid[scorer]": 35.2,
              "kid[scorer]": 0.012},
  "per_class": {"acc[scorer]": {"tumor": 0.5, ...}, "acc[expert]": {...}, "ssim": {"tumor": 0.1, ...},
                "fid[scorer]": {"tumor": null, ...}, "kid[scorer]": {"tumor": 0.02, ...}},
                                      # acc: the classifier's recall of each class; fid/kid: intra-class,
                                      # null where the class has too few images (provenance: per_class)
  "confusion": [[...]],               # the scorer's (else the expert's): rows = scored target classes,
                                      # cols = predicted (all classes)
  "reference": {"acc[scorer]": 0.95, "acc[expert]": 0.97, "ssim": 0.15},  # the same statistic on the
                                      # real images of the scored split (an accuracy's ceiling)
  "provenance": {"<metric>": {...}, ...}  # per metric: network (+ weights_sha256), n_gen, n_ref, ...
}
Stores written before the scorer existed say expert_acc / expert_recall, and older stores name the
per-class classifier recall recall[<classifier>]: the report reads them as acc[expert] and per-class
acc[<classifier>] (bench/report/collect.py).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable

import filelock

from bench.core.errors import BenchError

DONE = "DONE"
_UMASK = os.umask(0)
os.umask(_UMASK)
FAILED = "FAILED"
TRACEBACK = "FAILED.traceback"   # beside FAILED: the failure's whole traceback (FAILED holds one line)
# The names of a suite folder's files (the layout above); no other module spells them.
PLAN_FILE = "plan.json"
RUNS_DIR = "runs"
RUN_CONFIG_FILE = "config.json"  # a trained run's resolved config and spec: what makes a folder a run
CHECKPOINT_FILE = "checkpoint.safetensors"
INIT_FILE = "init.json"          # the run's [model] init provenance: source, layers initialised here, layers unused
STATE_FILE = "train_state.pt"    # an unfinished training's last checkpoint: what a re-run resumes from
LOG_FILE = "train_log.jsonl"     # a training's logged steps, written with each checkpoint
CURVES_DIR = "tensorboard"       # the same steps as TensorBoard event files (bench/engine/curves.py)
PROGRESS_FILE = "progress.json"  # a task's live state, beside its output
METRICS_FILE = "metrics.json"
SAMPLES_FILE = "samples.npz"
GRID_FILE = "grid.png"
FEATURES_FILE = "features.npz"
NEAREST_FILE = "nearest.npz"     # copy_rate's closest generated/training pairs, for the report's figure
LARGE_DIR = "large"              # a run's large images, one folder per setting (`bench sample-large`)
LARGE_IMAGES_FILE = "large.npz"  # one generation seed's generated large image and the real one it was conditioned on
LARGE_FIGURE_FILE = "large.png"  # the two side by side
SEAMS_FILE = "seams.json"        # their seam scores
PATCH_METRICS_FILE = "patch_metrics.json"   # patch FID/KID of every seed's large images, beside the seeds' folders
RUN_LAYOUT = "results/<suite>/runs/<dataset>/<method>/train-seed=<k>/<run_id>/"   # a trained run's folder
# How long a process waits for a lock another bench process holds before it gives up. Locks guard
# work that is computed once and shared; the wait lasts as long as that work.
SHORT_LOCK_TIMEOUT_S = 2 * 3600   # a cache entry made in minutes: prepared data, reference features, converted weights
LONG_LOCK_TIMEOUT_S = 48 * 3600   # a training (run, expert, SimCLR encoder) or an evaluation: hours on a CPU
MAX_NAME_BYTES = 200              # filesystems allow 255; long names keep a prefix and a hash
FOLDER_NAME_RULE = "a plain folder name: letters, digits, '-' or '_' (no '/', ':' or ',', not empty, '.' or '..')"
EVAL_SPLITS = ("test", "val")    # the real split a suite is scored against ([suite] eval_split)
# A val suite's folder is its name and this suffix; no suite name may end in it (in any case: a
# case-insensitive filesystem would merge "x@VAL" and "x@val"), so a val suite never shares a
# folder with a test suite, and a test suite keeps the folder it has always had.
VAL_SUITE_SUFFIX = "@val"
SUITE_NAME_RULE = FOLDER_NAME_RULE + f", not ending in {VAL_SUITE_SUFFIX!r} (that marks a val suite's folder)"
_AWKWARD = str.maketrans({":": "@", ",": "+", "/": "_", "\\": "_", "\0": "_"})


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


def json_bytes(obj) -> bytes:
    """The store's JSON: indented, keys sorted, one trailing newline."""
    return (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode()


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_bytes(path, json_bytes(obj))


def read_json(path: str | Path):
    """A JSON file of the store; a torn or edited one is a BenchError naming it."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BenchError(f"{path} is corrupt ({err}); delete it and run `bench run` again to rebuild it") from None


def folder_name(text: str) -> str:
    """A user-given name (method variant, data-set spec) as one folder name: '/' and '\\' would
    nest or leave folders, ':' and ',' are awkward on some filesystems, "", "." and ".." name no
    folder of their own, and names too long for a filesystem keep a prefix and a hash of the rest."""
    name = text.translate(_AWKWARD)
    if not name.strip("."):
        name = "_" + name
    if len(name.encode()) > MAX_NAME_BYTES:
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        name = name.encode()[:MAX_NAME_BYTES - 17].decode(errors="ignore") + "-" + digest
    return name


def is_folder_name(text: str) -> bool:
    """Whether `text` names one folder as it is (suite names must: they are typed, not generated)."""
    return folder_name(text) == text


def is_suite_name(text: str) -> bool:
    return is_folder_name(text) and not text.lower().endswith(VAL_SUITE_SUFFIX)


def suite_folder(suite: str, eval_split: str) -> str:
    """The folder name of suite `suite` scored against the real split `eval_split`."""
    if folder_split(suite) == "val" and is_suite_folder(suite):
        base = suite[:-len(VAL_SUITE_SUFFIX)]
        raise BenchError(f"{suite!r} is the folder of suite {base!r} scored on the val split; name the suite "
                         f"{base!r} and the split val (bench report --suite {base} --eval-split val)")
    if not is_suite_name(suite):
        raise BenchError(f"suite name {suite!r} must be {SUITE_NAME_RULE}")
    if eval_split not in EVAL_SPLITS:
        raise BenchError(f"eval split {eval_split!r} is not one of {', '.join(EVAL_SPLITS)}: "
                         "score against test, or val to choose settings without the test split")
    return suite if eval_split == "test" else suite + VAL_SUITE_SUFFIX


def folder_split(folder: str) -> str:
    """The split a suite folder's results are scored on (the inverse of `suite_folder`)."""
    return "val" if folder.lower().endswith(VAL_SUITE_SUFFIX) else "test"


def is_suite_folder(folder: str) -> bool:
    """Whether `folder` is what `suite_folder` makes of some suite name (a val folder of a name of
    MAX_NAME_BYTES is longer than a plain folder name may be, and still fine for a filesystem)."""
    return is_suite_name(folder[:-len(VAL_SUITE_SUFFIX)] if folder_split(folder) == "val" else folder)


class SuiteStore:
    """Paths of one suite's store; every writer goes through `atomic_write_*`. `folder` is the
    suite's folder in `results` (`SuiteStore.of` finds it from the suite name and split)."""

    def __init__(self, results: str | Path, folder: str):
        if not is_suite_folder(folder):
            raise BenchError(f"suite name {folder!r} must be {SUITE_NAME_RULE}")
        self.root = Path(results) / folder

    @classmethod
    def of(cls, results: str | Path, suite: str, eval_split: str) -> "SuiteStore":
        return cls(results, suite_folder(suite, eval_split))

    @property
    def plan_path(self) -> Path:
        return self.root / PLAN_FILE

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def method_cache(self) -> Path:
        """The methods' own cache (centroids, encoders): apart from the classifiers and prepared data."""
        return self.cache / "methods"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    def run_dir(self, dataset: str, variant: str, train_seed: int, run_id: str) -> Path:
        return self._inside(self.root / RUNS_DIR / folder_name(dataset) / folder_name(variant)
                            / f"train-seed={train_seed}" / folder_name(run_id))

    def _inside(self, path: Path) -> Path:
        """`path`, refused if it leads out of the suite's folder (names read back from plan.json are
        not trusted). Lexical: a store whose folders are symlinks elsewhere still works."""
        if not Path(os.path.normpath(path)).is_relative_to(os.path.normpath(self.root)):
            raise BenchError(f"{path} lies outside the results store {self.root}; plan.json names a run outside "
                             "it: restore plan.json, or delete it to plan the suite again")
        return path

    @staticmethod
    def eval_dir(run_dir: Path, gen_seed: int) -> Path:
        return run_dir / "eval" / f"seed={gen_seed}"

    @staticmethod
    def large_dir(run_dir: Path, setting: str) -> Path:
        """The folder of a run's large images at one setting (e.g. "k=4,stride=4,slerp")."""
        return run_dir / LARGE_DIR / folder_name(setting)

    def run_dirs(self):
        """Every run folder (holding config.json) in the store."""
        return sorted(p.parent for p in (self.root / RUNS_DIR).glob(f"*/*/train-seed=*/*/{RUN_CONFIG_FILE}"))


class FileLock:
    """An exclusive lock on `path` (filelock): one process at a time computes a shared artefact or
    trains a run; the others wait, then find the finished output. Waiting longer than `timeout_s`
    raises BenchError: a holder that never finishes must not hang every other process."""

    def __init__(self, path: str | Path, timeout_s: float = LONG_LOCK_TIMEOUT_S):
        self.path = Path(path)
        self._lock = filelock.FileLock(self.path, timeout=timeout_s)

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except filelock.Timeout:
            waited = f"{self._lock.timeout / 3600:g} h" if self._lock.timeout >= 3600 else f"{self._lock.timeout:g} s"
            raise BenchError(f"waited {waited} for the lock {self.path}: another bench process "
                             "holds it while computing the same result; wait for that process to finish, or delete "
                             f"{self.path} if no bench process is running") from None
        return self

    def __exit__(self, *exc):
        self._lock.release()


def computed_once(path: Path, compute: Callable[[], bytes], timeout_s: float = SHORT_LOCK_TIMEOUT_S) -> bytes:
    """The bytes cached at `path`: the first process that needs them runs `compute` and writes them
    atomically, under a lock beside the file; every other one waits for them and reads them."""
    if not path.exists():
        with FileLock(path.with_suffix(".lock"), timeout_s):
            if not path.exists():
                atomic_write_bytes(path, compute())
    return path.read_bytes()
