"""`bench report`: rebuild every table and figure of a suite from its store."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from bench.core.errors import BenchError
from bench.core.store import SuiteStore, atomic_write_bytes
from bench.report.claims import claims_frame
from bench.report.collect import RunStatus, SuiteData, collect
from bench.report.figures import FIGURES, slug
from bench.report.html import page
from bench.report.markdown import markdown
from bench.report.render import problem_runs
from bench.report.tables import DatasetTables, csv_frame, dataset_tables

# Every file a format writes under report/ (the one place these names live); md and html also
# write FIGURES_DIR. A build removes what the formats it does not write left behind, so the folder
# never mixes generations.
LEADERBOARD_MD, LEADERBOARD_CSV, OBSERVATIONS_CSV, CLAIMS_CSV, REPORT_HTML = (
    "leaderboard.md", "leaderboard.csv", "observations.csv", "claims.csv", "report.html")
FORMAT_FILES = {"md": (LEADERBOARD_MD,), "csv": (LEADERBOARD_CSV, OBSERVATIONS_CSV, CLAIMS_CSV),
                "html": (REPORT_HTML,)}
FIGURES_DIR = "figures"
FORMATS = tuple(FORMAT_FILES)


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
    """Read suite_root's store and write report/: FORMAT_FILES of each format, FIGURES_DIR.

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
        figures = _write_figures(data, tables, out / FIGURES_DIR)
        files += [out / FIGURES_DIR / name for items in figures.values() for _, name, _ in items]
    elif (out / FIGURES_DIR).is_dir():
        shutil.rmtree(out / FIGURES_DIR)
    texts = {LEADERBOARD_MD: lambda: markdown(data, tables, figures),
             LEADERBOARD_CSV: lambda: csv_frame(tables).to_csv(index=False),
             OBSERVATIONS_CSV: lambda: data.observations.to_csv(index=False),
             CLAIMS_CSV: lambda: claims_frame({t.dataset: t.claims for t in tables}).to_csv(index=False),
             REPORT_HTML: lambda: page(data, tables, figures)}
    for fmt, names in FORMAT_FILES.items():
        for name in names:
            if fmt in formats:
                atomic_write_bytes(out / name, texts[name]().encode())
                files.append(out / name)
            else:
                (out / name).unlink(missing_ok=True)
    return Report(data.suite, out, data, tuple(tables), tuple(files))
