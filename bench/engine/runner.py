"""`bench run`: plan the grid, compute shared artefacts once, then train and evaluate.

Each suite classifier (expert, scorer) that a method or metric declares it needs is one task; jobs that
need none start beside them, the rest wait for exactly the classifiers they need. Evaluations of a
model are submitted as soon as its training returns. The store is the truth: finished work is skipped
on every re-run, so an interrupted run resumes, and a Ray task retried after a lost worker continues
from its run's last checkpoint.
"""
from __future__ import annotations

import hashlib
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.text import Text

from bench.config import Config
from bench.core.console import make_console
from bench.core.errors import BenchError
from bench.core.store import DONE, FAILED, METRICS_FILE, PROGRESS_FILE, SuiteStore, atomic_write_json
from bench.engine.data import prepare_data
from bench.engine.executors import make_executor
from bench.engine.plan import RunSpec, build_plan
from bench.engine.progress import GridView, ProgressWriter
from bench.engine.tasks import eval_task, prepare_classifier, prepare_pretrain, train_task
from bench.methods import REGISTRY, load_plugin, method_name, parse_variant
from bench.metrics import classifiers_needed
from bench.metrics.registry import lookup
from bench.models.init import PRETRAIN

POLL_S = 0.5  # how often the driver looks at finished tasks and progress files


@dataclass
class Summary:
    root: Path
    trained: int = 0      # models trained by this invocation
    evaluated: int = 0    # evaluations computed by this invocation
    skipped: int = 0      # runs skipped because the store held all their results ("nothing to do")
    failed: list[str] = field(default_factory=list)


def prerequisites(cfg: Config, kind: str, spec: RunSpec) -> set[str]:
    """The prepared tasks (classifiers, pretrain) a train or eval job of `spec` waits for, as its method,
    its metrics and [model] init declare."""
    method, params = parse_variant(spec.variant)
    needed = {"expert"} if method.needs_expert(params) else set()
    if cfg.model.init == PRETRAIN:  # the U-Net starts from (and is built as) the suite's pretrain artefact
        needed.add("pretrain")
    return needed | set(classifiers_needed(cfg.metrics.names)) if kind == "eval" else needed


def write_plan(cfg: Config, plan: list[RunSpec], store: SuiteStore, data_path: Path) -> None:
    atomic_write_json(store.plan_path, {"suite": cfg.suite.name, "config": cfg.to_dict(),
                                        "prepared_data": {cfg.data.name: data_path.name},  # the report's real images
                                        "baseline": plan[0].variant if plan else cfg.suite.baseline,
                                        "runs": [s.to_dict() for s in plan]})


@dataclass(frozen=True)
class PluginSource:
    """How a Ray worker registers a plug-in's methods and metrics again: by importing its installed `module`, or by
    loading its `file`, which the job ships to every worker (runtime_env `py_modules`). The worker finds
    the shipped copy on its `sys.path` by content, since a file of the same name may come first there
    (Ray also puts the driver's script folder on it)."""
    module: str = ""    # an installed module, or
    file: str = ""      # the driver's path to a plug-in file
    sha256: str = ""    # of the file's content

    def load(self) -> None:
        if self.module:
            load_plugin(self.module)
            return
        copies = (Path(folder) / Path(self.file).name for folder in sys.path)
        shipped = next((c for c in copies if c.is_file() and _sha256(c) == self.sha256), None)
        load_plugin(str(shipped or self.file))  # not shipped (Ray started by the caller): a shared path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def plugin_sources(plan: list[RunSpec], metrics=()) -> dict[str, PluginSource]:
    """module -> its PluginSource, for the plan's methods and the `metrics` that came from plug-ins (a
    worker imports bench, not the driver's --plugin files)."""
    sources = {}
    modules = ({REGISTRY[method_name(s.variant)].__module__ for s in plan}
               | {lookup(m).compute.__module__ for m in metrics})
    for module in sorted(modules):
        if module.startswith("bench.") or module == "__main__":
            continue
        if module.startswith("bench_plugin_"):  # how load_plugin names a module loaded from a file
            path = Path(sys.modules[module].__file__).resolve()
            sources[module] = PluginSource(file=str(path), sha256=_sha256(path))
        else:
            sources[module] = PluginSource(module=module)
    return sources


UNRECORDED = "nothing recorded: the same command runs it again"  # a task that raised instead of returning


def run_task(kind: str, fn, args: tuple, progress: str, token: str, plugins: dict[str, PluginSource]):
    """What a worker runs around a task body: plug-ins registered, progress reported."""
    for module, source in plugins.items():
        if module not in sys.modules:
            source.load()
    writer = ProgressWriter(Path(progress), token)
    writer.start()
    try:
        value = fn(*args, on_step=writer.step) if kind in ("train", "pretrain") else fn(*args)
    except BaseException:
        writer.finish("stopped")
        raise
    writer.finish(value.get("status", "done") if isinstance(value, dict) else "done")
    return value


@dataclass(frozen=True)
class _Job:
    kind: str                   # expert | scorer (the classifier of that role) | pretrain | train | eval
    spec: RunSpec | None = None
    gen_seed: int | None = None
    needs: frozenset[str] = frozenset()  # the classifiers (and pretrain) a train or eval job waits for

    @property
    def label(self) -> str:
        if self.spec is None:
            return self.kind
        seeds = f"train seed {self.spec.train_seed}" + (f", gen seed {self.gen_seed}" if self.kind == "eval" else "")
        return f"{self.spec.variant} ({seeds})"

    @property
    def task_name(self) -> str:
        """What `ray list tasks` and the dashboard show: `train drift:delta=0.1 seed 0`, `eval ... gen 2`."""
        if self.spec is None:
            return self.kind
        return (f"{self.kind} {self.spec.variant} seed {self.spec.train_seed}"
                + (f" gen {self.gen_seed}" if self.kind == "eval" else ""))


class _Grid:
    """One invocation's driver loop: submits jobs, holds back those that need a classifier until it
    exists, settles finished ones into the summary and the live view."""

    def __init__(self, cfg: Config, store: SuiteStore, data_path: Path, executor, summary: Summary,
                 plan: list[RunSpec], plugins: dict[str, PluginSource], console: Console):
        self.cfg, self.store, self.data_path, self.executor, self.summary = cfg, store, data_path, executor, summary
        self.console = console
        self.token = uuid.uuid4().hex[:12]
        self.plugins = plugins
        self.view = GridView(self.token)
        self.pending: dict[object, _Job] = {}
        self.held: list[_Job] = []
        self.ready: set[str] = set()            # classifiers that exist
        self.errors: dict[str, str] = {}        # classifier -> why its task failed: its dependents fail too
        self.todo_eval = {s.run_id: [g for g in s.gen_seeds if not _evaluated(store, s, g)] for s in plan}

    def run(self, plan: list[RunSpec]) -> None:
        jobs = []
        for spec in plan:
            run_dir = _run_dir(self.store, spec)
            if (run_dir / DONE).exists():
                self.view.count("train", done=1)
                jobs += [self._job("eval", spec, g) for g in self.todo_eval[spec.run_id]]
            elif (run_dir / FAILED).exists():  # listed by run_suite with the other recorded failures
                self.view.count("train", failed=1)
            else:
                jobs.append(self._job("train", spec))
        # a training's evaluations come later, and may need more classifiers than the training
        later = [self._job("eval", job.spec) for job in jobs
                 if job.kind == "train" and self.todo_eval[job.spec.run_id]]
        for role in sorted(set().union(*(job.needs for job in jobs + later))):
            self._submit(_Job(role))
        for job in jobs:
            self._queue(job)
        while self.pending:
            for handle in self.executor.wait(list(self.pending), timeout=POLL_S):
                self._settle(handle)

    def _job(self, kind: str, spec: RunSpec, gen_seed: int | None = None) -> _Job:
        return _Job(kind, spec, gen_seed, frozenset(prerequisites(self.cfg, kind, spec)))

    def _queue(self, job: _Job) -> None:
        failed = sorted(job.needs & set(self.errors))
        if failed:
            self.view.count(job.kind, failed=1)
            self.summary.failed.append(f"{job.label}: the {failed[0]} is unavailable ({self.errors[failed[0]]})")
        elif job.needs <= self.ready:
            self._submit(job)
        else:
            self.held.append(job)

    def _submit(self, job: _Job) -> None:
        cfg, results = self.cfg, self.store.root.parent
        if job.spec is None:  # a classifier, named by its role, or the pretrain backbone
            fn = prepare_pretrain if job.kind == PRETRAIN else prepare_classifier
            args = (cfg, job.kind, self.data_path, self.store.cache)
            progress = self.store.cache / f"{job.kind}-{PROGRESS_FILE}"
        elif job.kind == "train":
            fn, args = train_task, (cfg, job.spec, results, self.data_path)
            progress = _run_dir(self.store, job.spec) / PROGRESS_FILE
        else:
            fn, args = eval_task, (cfg, job.spec, job.gen_seed, results, self.data_path)
            progress = SuiteStore.eval_dir(_run_dir(self.store, job.spec), job.gen_seed) / PROGRESS_FILE
        handle = self.executor.submit(run_task, job.kind, fn, args, str(progress), self.token, self.plugins,
                                      kind=job.kind, name=job.task_name)
        self.pending[handle] = job
        self.view.submitted(handle, job.kind, job.label, progress)

    def _settle(self, handle) -> None:
        job = self.pending.pop(handle)
        unrecorded = ""  # a task that raised wrote no FAILED marker: the same command runs it again
        try:
            status = self.executor.result(handle)
        except BenchError as err:
            if job.spec is None:  # a classifier's bad input (e.g. missing weights): stop with the one-line error
                raise
            status = {"status": "failed", "reason": str(err)}
        except Exception as err:  # a bug in a task, or a worker lost more often than max_retries allows
            status = {"status": "failed", "reason": f"{type(err).__name__}: {err}".splitlines()[0]}
            unrecorded = f" ({UNRECORDED})"
        ok = status.get("status", "done") == "done"  # a classifier task returns its accuracy, no status
        self.view.finished(handle, ok)
        # One line per finished task: above the live view on a terminal, the whole story in a log file.
        self.console.print(f"done {job.kind} {job.label}" if ok else
                           Text.assemble(("failed", "red"), f" {job.kind} {job.label}: {status['reason']}{unrecorded}"),
                           highlight=False, soft_wrap=True)
        if not ok:
            self.summary.failed.append(f"{job.label}: {status['reason']}{unrecorded}")
        if job.spec is None:
            self._classifier_settled(job.kind, ok, status)
        elif job.kind == "train" and ok:
            self.summary.trained += not status.get("reused", False)
            for g in self.todo_eval[job.spec.run_id]:
                self._queue(self._job("eval", job.spec, g))
        elif job.kind == "eval" and ok:
            self.summary.evaluated += not status.get("reused", False)

    def _classifier_settled(self, role: str, ok: bool, status: dict) -> None:
        if ok:
            self.ready.add(role)
        else:
            self.errors[role] = status["reason"]
        held, self.held = self.held, []
        for job in held:
            self._queue(job)


def run_suite(cfg: Config, results: Path, console: Console | None = None) -> Summary:
    """Train and evaluate the suite's grid in `results`, showing its progress on `console` (one of
    bench.core.console.make_console; stderr by default)."""
    console = console or make_console(stderr=True)
    results = Path(results).resolve()  # Ray workers run with another working directory, or elsewhere
    plan = build_plan(cfg)
    store = SuiteStore.of(results, cfg.suite.name, cfg.suite.eval_split)
    summary = Summary(store.root)
    # in the driver: bad data, or runs trained on other classes, fail before any write
    data_path = prepare_data(cfg, store.cache, reused_runs=[_run_dir(store, s) for s in plan])
    write_plan(cfg, plan, store, data_path)
    summary.failed = _recorded_failures(store, plan)
    done = [s for s in plan if (_run_dir(store, s) / DONE).exists()]
    failed = [s for s in plan if (_run_dir(store, s) / FAILED).exists()]
    if len(done) + len(failed) == len(plan) and all(_evaluated(store, s, g) for s in done for g in s.gen_seeds):
        summary.skipped = len(plan)
        return summary
    try:
        _execute(cfg, store, data_path, plan, summary, console)
    except KeyboardInterrupt:
        console.print(f"interrupted: finished runs and evaluations are kept in {store.root}, and a training "
                      "continues from its last checkpoint; run the same command again to resume",
                      highlight=False, soft_wrap=True)
        raise
    return summary


def _execute(cfg: Config, store: SuiteStore, data_path: Path, plan: list[RunSpec], summary: Summary,
             console: Console) -> None:
    plugins = plugin_sources(plan, cfg.metrics.names)
    executor = make_executor(cfg.execution, tuple(sorted({p.file for p in plugins.values() if p.file})))
    try:
        executor.plan_gpus(cfg, data_path)
        grid = _Grid(cfg, store, data_path, executor, summary, plan, plugins, console)
        console.print(f"{executor.describe()}\nresults: {store.root}", highlight=False, soft_wrap=True)
        try:
            with Live(grid.view, console=console, refresh_per_second=2, transient=False):
                grid.run(plan)
        except BaseException:  # Ctrl-C or an abort: stop the tasks still queued or running
            executor.cancel(list(grid.pending))
            raise
        finally:
            if not console.is_terminal:  # Live ends its last frame with a newline on terminals only
                console.line()
    finally:
        executor.shutdown()


def _run_dir(store: SuiteStore, spec: RunSpec) -> Path:
    return store.run_dir(spec.dataset, spec.variant, spec.train_seed, spec.run_id)


def _evaluated(store: SuiteStore, spec: RunSpec, gen_seed: int) -> bool:
    """Whether the evaluation has an outcome in the store: metrics, or a FAILED marker (listed by
    `_recorded_failures`, not retried)."""
    out = SuiteStore.eval_dir(_run_dir(store, spec), gen_seed)
    return (out / METRICS_FILE).exists() or (out / FAILED).exists()


def _recorded_failures(store: SuiteStore, plan: list[RunSpec]) -> list[str]:
    """The FAILED markers earlier invocations left for this plan (a run, or an evaluation of a
    finished run). A deterministic failure is not retried, but it is listed on every re-run, with
    the marker to delete to retry it."""
    lines = []
    for spec in plan:
        run_dir = _run_dir(store, spec)
        if (run_dir / FAILED).exists():
            lines.append(_failure_line(_Job("train", spec), run_dir))
        elif (run_dir / DONE).exists():
            lines += [_failure_line(_Job("eval", spec, g), SuiteStore.eval_dir(run_dir, g))
                      for g in spec.gen_seeds if (SuiteStore.eval_dir(run_dir, g) / FAILED).exists()]
    return lines


def _failure_line(job: _Job, folder: Path) -> str:
    reason = (folder / FAILED).read_text(errors="replace").strip() or "no reason recorded"
    return f"{job.label}: {reason} (recorded earlier; delete {folder / FAILED} to retry)"
