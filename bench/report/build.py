"""`bench report`: rebuild every table and figure of a suite from its store."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError
from bench.report.collect import RunStatus, SuiteData, collect
from bench.report.figures import FIGURES, slug
from bench.report.html import page
from bench.report.render import markdown, problem_runs
from bench.report.tables import DatasetTables, csv_frame, dataset_tables
from bench.store import SuiteStore, atomic_write_bytes

FORMATS = ("md", "csv", "html")


@dataclass(frozen=True)
class Report:
    suite: str
    report_dir: Path
    data: SuiteData
    tables: tuple[DatasetTables, ...]   # one per data set, plan order
    files: tuple[Path, ...]             # everything written by this build

    @property
    def problems(self) -> list[RunStatus]:
        """Planned runs that are not done: failed, partial or missing."""
        return problem_runs(self.data)

    @property
    def failed(self) -> list[RunStatus]:
        return [r for r in self.data.runs if r.status == "failed"]


def _write_figures(data: SuiteData, tables: list[DatasetTables],
                   folder: Path) -> dict[str, list[tuple[str, str, bytes]]]:
    """Draw every figure, write it under folder, drop PNGs an earlier build left behind."""
    figures: dict[str, list[tuple[str, str, bytes]]] = {}
    written = set()
    for t in tables:
        for kind, title, draw in FIGURES:
            png = draw(data, t)
            if png is None:
                continue
            name = f"{slug(t.dataset)}_{kind}.png"
            atomic_write_bytes(folder / name, png)
            written.add(name)
            figures.setdefault(t.dataset, []).append((title, name, png))
    for stale in folder.glob("*.png") if folder.is_dir() else ():
        if stale.name not in written:
            stale.unlink()
    return figures


def build_report(suite_root: str | Path, formats: tuple[str, ...] = FORMATS) -> Report:
    """Read suite_root's store and write report/leaderboard.md, .csv, report.html, figures/.

    Raises BenchError for a missing plan, an unknown format, or runs that cannot share a
    leaderboard (different code versions or metric settings).
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise BenchError(f"unknown report format(s) {unknown or list(formats)}: choose from "
                         f"{', '.join(FORMATS)}")
    root = Path(suite_root)
    data = collect(root)
    tables = [dataset_tables(data, dataset) for dataset in data.methods]
    out = SuiteStore(root.parent, root.name).report_dir
    files: list[Path] = []
    figures = {}
    if "md" in formats or "html" in formats:
        figures = _write_figures(data, tables, out / "figures")
        files += [out / "figures" / name for items in figures.values() for _, name, _ in items]
    outputs = {"csv": ("leaderboard.csv", lambda: csv_frame(tables).to_csv(index=False)),
               "md": ("leaderboard.md", lambda: markdown(data, tables, figures)),
               "html": ("report.html", lambda: page(data, tables, figures))}
    for fmt in formats:
        name, text = outputs[fmt]
        atomic_write_bytes(out / name, text().encode())
        files.append(out / name)
    return Report(data.suite, out, data, tuple(tables), tuple(files))
