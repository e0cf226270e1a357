"""`bench run`: plan the grid, compute shared artefacts once, then train and evaluate.

Evaluations of a model are submitted as soon as its training task returns; the store is the truth,
so finished work is skipped on every re-run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.config import Config
from bench.executors import make_executor
from bench.plan import RunSpec, build_plan
from bench.store import DONE, FAILED, SuiteStore, atomic_write_json
from bench.tasks import METRICS_FILE, eval_task, prepare_data, prepare_expert, train_task

# Methods whose training or sampling needs the expert; metrics with "expert" in the name need it too.
EXPERT_METHODS = ("aligned", "aligned-clean", "ssl")


@dataclass
class Summary:
    root: Path
    trained: int = 0
    evaluated: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)


def needs_expert(cfg: Config, plan: list[RunSpec]) -> bool:
    return (any("expert" in m for m in cfg.metrics.names)
            or any(s.variant.partition(":")[0] in EXPERT_METHODS for s in plan))


def write_plan(cfg: Config, plan: list[RunSpec], store: SuiteStore) -> None:
    atomic_write_json(store.plan_path, {"suite": cfg.suite.name, "config": cfg.to_dict(),
                                        "baseline": plan[0].variant if plan else cfg.suite.baseline,
                                        "runs": [s.to_dict() for s in plan]})


def run_suite(cfg: Config, results: Path, console: Console | None = None) -> Summary:
    console = console or Console(stderr=True)
    plan = build_plan(cfg)
    store = SuiteStore(results, cfg.suite.name)
    summary = Summary(store.root)
    todo_eval = {s.run_id: [g for g in s.gen_seeds if not _evaluated(store, s, g)] for s in plan}
    todo_train = [s for s in plan if not (_run_dir(store, s) / DONE).exists()
                  and not (_run_dir(store, s) / FAILED).exists()]
    data_path = prepare_data(cfg, store.cache)  # in the driver: bad data fails before any write
    write_plan(cfg, plan, store)
    n_eval = sum(len(v) for v in todo_eval.values())
    if not todo_train and n_eval == 0:
        summary.failed = [f"{s.variant} (train seed {s.train_seed}): {_reason(_run_dir(store, s))}"
                          for s in plan if (_run_dir(store, s) / FAILED).exists()]
        summary.skipped = len(plan)
        return summary
    executor = make_executor(cfg.execution)
    try:
        with Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, transient=False) as progress:
            shared = progress.add_task("expert", total=1)
            if needs_expert(cfg, plan):
                executor.result(executor.submit(prepare_expert, cfg, data_path, store.cache, kind="expert"))
            progress.advance(shared)
            train_bar = progress.add_task("train", total=len(plan))
            eval_bar = progress.add_task("evaluate", total=n_eval)
            progress.advance(train_bar, len(plan) - len(todo_train))
            pending = {}
            for spec in plan:
                if spec in todo_train:
                    pending[executor.submit(train_task, cfg, spec, results, data_path, kind="train")] = ("train", spec, None)
                elif (_run_dir(store, spec) / DONE).exists():
                    for g in todo_eval[spec.run_id]:
                        pending[executor.submit(eval_task, cfg, spec, g, results, data_path, kind="eval")] = ("eval", spec, g)
                else:
                    summary.failed.append(f"{spec.variant} (train seed {spec.train_seed}): {_reason(_run_dir(store, spec))}")
                    progress.advance(eval_bar, len(todo_eval[spec.run_id]))
            while pending:
                for handle in executor.wait(list(pending)):
                    kind, spec, gen_seed = pending.pop(handle)
                    try:
                        status = executor.result(handle)
                    except Exception as err:  # a worker lost more often than max_retries allows
                        status = {"status": "failed", "reason": f"{type(err).__name__}: {err}".splitlines()[0]}
                    label = f"{spec.variant} (train seed {spec.train_seed}" + (f", gen seed {gen_seed})" if kind == "eval" else ")")
                    if kind == "train":
                        progress.advance(train_bar)
                        if status["status"] == "done":
                            summary.trained += 1
                            for g in todo_eval[spec.run_id]:
                                pending[executor.submit(eval_task, cfg, spec, g, results, data_path, kind="eval")] = ("eval", spec, g)
                        else:
                            summary.failed.append(f"{label}: {status['reason']}")
                            progress.advance(eval_bar, len(todo_eval[spec.run_id]))
                    else:
                        progress.advance(eval_bar)
                        if status["status"] == "done":
                            summary.evaluated += 1
                        else:
                            summary.failed.append(f"{label}: {status['reason']}")
    finally:
        executor.shutdown()
    return summary


def _run_dir(store: SuiteStore, spec: RunSpec) -> Path:
    return store.run_dir(spec.dataset, spec.variant, spec.train_seed, spec.run_id)


def _evaluated(store: SuiteStore, spec: RunSpec, gen_seed: int) -> bool:
    out = SuiteStore.eval_dir(_run_dir(store, spec), gen_seed)
    return (out / METRICS_FILE).exists() or (out / FAILED).exists()


def _reason(run_dir: Path) -> str:
    return (run_dir / FAILED).read_text().strip() if (run_dir / FAILED).exists() else "not finished"
