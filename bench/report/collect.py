"""Read one suite's store into what the report needs; refuse to mix incomparable runs.

plan.json is the grid: every planned run is accounted for (done, partial, failed or missing),
and only the planned generation seeds are read. Run folders the plan does not name (a grid of
an earlier configuration) are listed, never scored.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.core.errors import BenchError
from bench.core.store import DONE, FAILED, LOG_FILE, METRICS_FILE, RUN_CONFIG_FILE, STATE_FILE, SuiteStore, read_json
from bench.core.shapes import METRICS, PLAN, RUN_CONFIG, checked

METRICS_SCHEMA = 1
# Names that stores written before the scorer existed use -> today's names: such stores still report.
OLD_METRIC_NAMES = {"expert_acc": "acc[expert]"}
# Per-class names of older stores: a classifier's per-class recall was recall[<classifier>] (expert_recall
# before the scorer); it is acc[<classifier>] per class now, so that recall[<network>] is only the k-NN recall.
OLD_PER_CLASS_NAMES = {"expert_recall": "acc[expert]", "recall[expert]": "acc[expert]",
                       "recall[scorer]": "acc[scorer]"}

# Provenance fields that legitimately differ between evaluations of one comparison (which seed,
# which machine, how long it took). Everything else -- extractor, weights hash, layer, resizer,
# n_gen, n_ref, reference split, library versions -- must be equal to share a leaderboard.
REDO_EVALUATION = "delete it and re-run `bench run` to redo that evaluation"

VOLATILE_PROVENANCE_KEYS = frozenset({
    "gen_seed", "train_seed", "run_id", "seed", "device", "host", "hostname",
    "timestamp", "created", "elapsed_s", "seconds", "time_s", "wall_s",
    "path", "samples_path", "eval_dir",
})


@dataclass(frozen=True)
class RunStatus:
    dataset: str
    method: str
    train_seed: int
    run_id: str
    status: str            # "done" | "partial" | "failed" | "missing"
    reason: str            # the FAILED text, or what is missing
    run_dir: Path
    code_version: str = ""


@dataclass(frozen=True)
class Evaluation:
    """One metrics.json: one trained model at one generation seed."""

    dataset: str
    method: str
    train_seed: int
    gen_seed: int
    run_id: str
    eval_dir: Path
    record: dict           # the metrics.json content
    train_code_version: str = ""   # config.json's: the code that trained the model


@dataclass(frozen=True)
class SuiteData:
    root: Path
    suite: str
    plan: dict
    baseline: str
    methods: dict[str, tuple[str, ...]]    # dataset -> variants in plan order, baseline first
    runs: tuple[RunStatus, ...]
    evaluations: tuple[Evaluation, ...]
    unplanned: tuple[Path, ...] = ()       # run folders on disk that plan.json does not name
    observations: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def eval_split(self) -> str:
        """The real split the suite is scored against (plans written before val suites: test)."""
        return self.plan.get("config", {}).get("suite", {}).get("eval_split", "test")

    def evals_of(self, dataset: str, method: str | None = None) -> list[Evaluation]:
        return [e for e in self.evaluations
                if e.dataset == dataset and (method is None or e.method == method)]

    def runs_of(self, dataset: str, method: str) -> list[RunStatus]:
        return [r for r in self.runs if r.dataset == dataset and r.method == method]


def _reason_line(text: str, limit: int = 300) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    reason = lines[-1] if lines else "no reason recorded"   # a traceback's last line says what
    return reason if len(reason) <= limit else reason[:limit - 1] + "…"


def _read_metrics(path: Path) -> dict:
    try:
        record = read_json(path)  # a corrupt file is already a BenchError naming it
    except OSError as e:
        raise BenchError(f"unreadable {path}: {e}; {REDO_EVALUATION}") from e
    checked(record, METRICS, path, REDO_EVALUATION)
    if record.get("schema") != METRICS_SCHEMA:
        raise BenchError(f"{path} has metrics schema {record.get('schema')!r}, this bench reads "
                         f"schema {METRICS_SCHEMA}; re-run that evaluation with this version")
    return {key: {(OLD_PER_CLASS_NAMES if key == "per_class" else OLD_METRIC_NAMES).get(name, name): v
                  for name, v in value.items()}
            if key in ("metrics", "per_class", "reference", "provenance") and isinstance(value, dict) else value
            for key, value in record.items()}


def store_number(value, path: Path, what: str) -> float:
    """A number of a metrics.json (None: not computed, NaN); anything else is a BenchError."""
    if value is None:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BenchError(f"{path}: {what} is {value!r}, not a number; {REDO_EVALUATION}")
    return float(value)


def _variant(spec: dict) -> str:
    """A plan row's method variant (bench.engine.plan.RunSpec writes it as "variant")."""
    return spec["variant"] if "variant" in spec else spec["method"]


def _interrupted(run_dir: Path, steps) -> str:
    """What a training that stopped after a checkpoint left: its log is written with each checkpoint,
    so its last logged step is where a re-run resumes (`steps`: the suite's train.steps, if recorded)."""
    logged = []
    if (run_dir / LOG_FILE).is_file():
        for line in (run_dir / LOG_FILE).read_text(errors="replace").splitlines():
            try:
                logged.append(int(json.loads(line)["step"]))
            except (ValueError, TypeError, KeyError):
                continue  # a torn or foreign line: the others still say where it stopped
    where = f" at step {max(logged)}" + (f" of {steps}" if steps else "") if logged else ""
    return f"interrupted{where}; re-run `bench run` to resume from its last checkpoint"


def _collect_run(store: SuiteStore, spec: dict, steps) -> tuple[RunStatus, list[Evaluation]]:
    dataset, method = spec["dataset"], _variant(spec)
    train_seed, run_id = int(spec["train_seed"]), spec["run_id"]
    run_dir = store.run_dir(dataset, method, train_seed, run_id)
    config = run_dir / RUN_CONFIG_FILE
    code_version = str(checked(read_json(config), RUN_CONFIG, config, "delete the run folder and re-run `bench run` "
                               "to retrain it").get("code_version", "")) if config.is_file() else ""
    evals, missing, eval_failures = [], [], []
    for gen_seed in spec.get("gen_seeds", []):
        eval_dir = store.eval_dir(run_dir, int(gen_seed))
        if (eval_dir / METRICS_FILE).is_file():
            evals.append(Evaluation(dataset, method, train_seed, int(gen_seed), run_id, eval_dir,
                                    _read_metrics(eval_dir / METRICS_FILE), code_version))
        elif (eval_dir / FAILED).is_file():
            eval_failures.append(f"seed {gen_seed}: "
                                 + _reason_line((eval_dir / FAILED).read_text(errors="replace")))
        else:
            missing.append(str(gen_seed))
    trained = (run_dir / DONE).is_file()
    if (run_dir / FAILED).is_file():
        status, reason = "failed", _reason_line((run_dir / FAILED).read_text(errors="replace"))
    elif trained and not missing and not eval_failures:
        status, reason = "done", ""
    elif not evals and not eval_failures:
        status = "missing"
        reason = ("trained, not evaluated yet" if trained else _interrupted(run_dir, steps) if
                  (run_dir / STATE_FILE).is_file() else "not run yet (no DONE, FAILED or metrics)")
    else:
        status = "partial" if evals else "failed"
        parts = eval_failures + ([f"no metrics for generation seed(s) {', '.join(missing)}"]
                                 if missing else [])
        if not trained:
            parts.append("no DONE marker (still running or interrupted)")
        reason = "; ".join(parts)
    return RunStatus(dataset, method, train_seed, run_id, status, reason, run_dir,
                     code_version), evals


# observations.csv's columns: an evaluation's keys, the metric and its value, then its provenance.
OBSERVATION_COLUMNS = ["dataset", "method", "run_id", "train_seed", "gen_seed", "metric", "value",
                       "code_version", "extractor", "n_gen", "n_ref"]


def observations_frame(evaluations: list[Evaluation]) -> pd.DataFrame:
    """Long table, one row per evaluation x metric (value NaN = not computed), OBSERVATION_COLUMNS."""
    rows = []
    for e in evaluations:
        for name, value in e.record.get("metrics", {}).items():
            prov = e.record.get("provenance", {}).get(name)
            prov = prov if isinstance(prov, dict) else {}
            rows.append((e.dataset, e.method, e.run_id, e.train_seed, e.gen_seed, name,
                         store_number(value, e.eval_dir / METRICS_FILE, f"metrics[{name!r}]"),
                         e.record.get("code_version"),
                         prov.get("extractor"), prov.get("n_gen"), prov.get("n_ref")))
    return pd.DataFrame(rows, columns=OBSERVATION_COLUMNS)


def seed_keyed(rows: pd.DataFrame, values: pd.Series | None = None) -> dict[tuple[int, int], float]:
    """{(train seed, generation seed): value} of observation rows, what paired tests pair by;
    `values` (aligned with rows) replaces their "value" column, e.g. a distance to the real value."""
    values = rows["value"] if values is None else values
    return {(int(t), int(g)): float(v) for t, g, v in zip(rows["train_seed"], rows["gen_seed"], values)}


def _describe(evals: list[Evaluation], limit: int = 4) -> str:
    runs = sorted({(e.method, e.train_seed, e.run_id) for e in evals})
    names = [f"{m} (train seed {k}, run {r})" for m, k, r in runs]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _stable(provenance) -> dict:
    if not isinstance(provenance, dict):       # a shared scalar entry, e.g. a library version
        return {"value": provenance}
    return {k: v for k, v in provenance.items() if k not in VOLATILE_PROVENANCE_KEYS}


def _refuse(dataset: str, what: str, groups: dict[str, list[Evaluation]]) -> None:
    listed = "; ".join(f"{value} in {_describe(evals)}" for value, evals in groups.items())
    raise BenchError(f"cannot compare runs of {dataset}: {what} differs -- {listed}. Re-run the "
                     "stale runs with one version and one metric setting (delete their run "
                     "folders), or report them in separate suites")


def check_comparable(evaluations: list[Evaluation]) -> None:
    """One data set's leaderboard holds one code version and one setting per metric.

    Methods are compared against each other (and the baseline) column by column, so the rule
    holds across the whole data set, not only inside a cell. n_gen is part of the setting:
    FID/KID depend on the sample size.
    """
    by_dataset: dict[str, list[Evaluation]] = {}
    for e in evaluations:
        by_dataset.setdefault(e.dataset, []).append(e)
    for dataset, evals in by_dataset.items():
        for what, version_of in (("code_version of the evaluation (metrics.json)",
                                  lambda e: e.record.get("code_version")),
                                 ("code_version of the training (config.json)",
                                  lambda e: e.train_code_version)):
            versions: dict[str, list[Evaluation]] = {}
            for e in evals:
                versions.setdefault(f"code_version {version_of(e)!r}", []).append(e)
            if len(versions) > 1:
                _refuse(dataset, what, versions)
        entries = sorted({name for e in evals for name in e.record.get("provenance", {})})
        for entry in entries:                 # every metric's entry, and any shared one
            having = [e for e in evals if entry in e.record.get("provenance", {})]
            settings = [_stable(e.record["provenance"][entry]) for e in having]
            keys = sorted({k for s in settings for k in s})
            for key in keys:
                values: dict[str, list[Evaluation]] = {}
                for e, s in zip(having, settings):
                    shown = json.dumps(s.get(key, "<absent>"), sort_keys=True, default=str)
                    values.setdefault(f"{key}={shown}", []).append(e)
                if len(values) > 1:
                    _refuse(dataset, f"the provenance of {entry} field {key!r}", values)


def _method_order(runs: list[dict], baseline: str) -> dict[str, tuple[str, ...]]:
    order: dict[str, list[str]] = {}
    for spec in runs:
        seen = order.setdefault(spec["dataset"], [])
        if _variant(spec) not in seen:
            seen.append(_variant(spec))
    return {d: tuple(sorted(ms, key=lambda m: m != baseline)) for d, ms in order.items()}


def collect(suite_root: str | Path) -> SuiteData:
    """Everything the report shows, read from the store; nothing is written."""
    root = Path(suite_root)
    store = SuiteStore(root.parent, root.name)
    if not store.plan_path.is_file():
        raise BenchError(f"no plan.json in {root}: point --results at the folder holding the "
                         "suite (results/ by default) or run `bench run` first")
    plan = checked(read_json(store.plan_path), PLAN, store.plan_path,
                   "delete it and run the suite's `bench run` again to rewrite it")
    baseline = plan.get("baseline", "baseline")
    runs, evaluations = [], []
    steps = plan.get("config", {}).get("train", {}).get("steps")
    for spec in plan.get("runs", []):
        status, evals = _collect_run(store, spec, steps)
        runs.append(status)
        evaluations.extend(evals)
    # seed order, not plan or file order: the same store always gives bit-identical sums
    evaluations.sort(key=lambda e: (e.dataset, e.method, e.train_seed, e.gen_seed))
    check_comparable(evaluations)
    planned = {r.run_dir for r in runs}
    unplanned = tuple(d for d in store.run_dirs() if d not in planned)
    return SuiteData(root=root, suite=plan.get("suite", root.name), plan=plan, baseline=baseline,
                     methods=_method_order(plan.get("runs", []), baseline), runs=tuple(runs),
                     evaluations=tuple(evaluations), unplanned=unplanned,
                     observations=observations_frame(evaluations))
