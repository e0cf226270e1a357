"""The report's figures (matplotlib, Agg, PNG); each returns the PNG bytes or None when the store
holds nothing to draw. matplotlib is imported here only, so reading the tables stays fast."""
from __future__ import annotations

import functools
import io
import json
import math
import re
from pathlib import Path

import numpy as np

from bench.core.store import FEATURES_FILE, LOG_FILE, NEAREST_FILE, SAMPLES_FILE, SuiteStore, is_folder_name
from bench.engine.curves import read_curves
from bench.datasets.base import PreparedData
from bench.report.collect import Evaluation, SuiteData
from bench.report.large_figure import large_images
from bench.report.tables import DatasetTables, arrow

GRID_COLUMNS = 8          # sample-grid images per class row
PANELS_PER_ROW = 3        # subplots per figure row (methods side by side)
LOSS_SMOOTHING = 0.05     # EMA span as a fraction of the logged steps


def slug(text: str) -> str:
    """A data set or method name as a file-name part."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_") or "x"


def _figure(n_panels: int, axis_w: float, axis_h: float, cols: int = PANELS_PER_ROW,
            left: float = 0.8, bottom: float = 0.8, top: float = 0.45, right: float = 0.2):
    """A Figure of n axes on a fixed grid; sizes in inches. Fixed margins, not a layout engine:
    constrained layout draws every figure twice, and the report must stay fast."""
    from matplotlib.figure import Figure  # no pyplot: no global state, Agg canvas on savefig

    cols = max(1, min(cols, n_panels))
    rows = math.ceil(n_panels / cols)
    gap_w, gap_h = left, bottom + top      # a neighbour's tick labels and title live in the gaps
    width = left + cols * axis_w + (cols - 1) * gap_w + right
    height = top + rows * axis_h + (rows - 1) * gap_h + bottom
    fig = Figure(figsize=(width, height), dpi=100)
    grid = fig.add_gridspec(rows, cols, left=left / width, right=1 - right / width,
                            bottom=bottom / height, top=1 - top / height,
                            wspace=gap_w / axis_w, hspace=gap_h / axis_h)
    return fig, [fig.add_subplot(grid[i // cols, i % cols]) for i in range(n_panels)]


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _plain_text(draw):
    """Draw with mathtext off: class and method names are user text, and a '$' pair in one
    ('$x^$') must be shown as typed, not parsed as TeX (which raises)."""
    @functools.wraps(draw)
    def drawn(*args, **kwargs):
        import matplotlib
        with matplotlib.rc_context({"text.parse_math": False}):
            return draw(*args, **kwargs)
    return drawn


def _class_names(e: Evaluation) -> list[str]:
    return list(e.record.get("class_names", []))


def showcase(data: SuiteData, t: DatasetTables, filename: str) -> dict[str, Evaluation]:
    """Per method, the evaluation to draw from: the lowest (train seed, generation seed) that
    holds `filename` in every method if there is one, else each method's own lowest."""
    having = {m: sorted((e for e in data.evals_of(t.dataset, m) if (e.eval_dir / filename).is_file()),
                        key=lambda e: (e.train_seed, e.gen_seed)) for m in t.methods}
    having = {m: evals for m, evals in having.items() if evals}
    keys = [{(e.train_seed, e.gen_seed) for e in evals} for evals in having.values()]
    common = sorted(set.intersection(*keys)) if keys else []
    return {m: next((e for e in evals if common and (e.train_seed, e.gen_seed) == common[0]),
                    evals[0]) for m, evals in having.items()}


def real_images(data: SuiteData, dataset: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(images, labels) of the split that scored the suite, from the prepared data plan.json names
    (None for a store written before plan.json named it, or whose cache lost the file)."""

    name = data.plan.get("prepared_data", {}).get(dataset)
    path = SuiteStore(data.root.parent, data.root.name).cache / name if isinstance(name, str) and is_folder_name(name) else None
    if path is None or not path.is_file():
        return None
    return PreparedData.load(path).split(data.eval_split)


def sample_grids(data: SuiteData, t: DatasetTables) -> bytes | None:
    """A panel of real images of the scored split first, then one panel per method: one row per
    class, the first GRID_COLUMNS samples of that class (samples.npz holds the same rows per class
    and seed for every method; the real panel as many per class). Drawn with PIL at an integer
    scale: pixels stay pixels, and matplotlib would resample and take seconds."""
    from PIL import Image, ImageDraw, ImageFont

    chosen = showcase(data, t, SAMPLES_FILE)
    if not chosen:
        return None
    # per panel, in drawing order: (title, images, labels), or (title, None, why) for a method with no samples
    panels = []
    for method in t.methods:     # every method gets its panel, drawn or not
        if method not in chosen:
            panels.append((method, None, f"no samples ({t.row_status[method]})"))
            continue
        e = chosen[method]
        with np.load(e.eval_dir / SAMPLES_FILE) as npz:
            panels.append((f"{method}\ntrain seed {e.train_seed}, gen seed {e.gen_seed}",
                           npz["images"], npz["labels"]))
    images0, labels0 = next((images, labels) for _, images, labels in panels if images is not None)
    h, w = images0.shape[1:3]
    classes = np.unique(labels0)
    names = _class_names(next(iter(chosen.values())))
    real = real_images(data, t.dataset)
    if real is not None and real[0].shape[1:] == images0.shape[1:]:
        per_class = min(GRID_COLUMNS, int(np.bincount(labels0).max()))
        keep = np.concatenate([np.flatnonzero(real[1] == cls)[:per_class] for cls in classes])
        panels.insert(0, (f"real\n{data.eval_split} split", real[0][keep], real[1][keep]))
    scale, pad, gap, title_h = max(1, 64 // max(h, w)), 2, 16, 34
    font = ImageFont.load_default(size=12)
    label_w = 8 + max(int(font.getlength(names[k] if k < len(names) else str(k))) for k in classes)
    cell_h, cell_w = h * scale + pad, w * scale + pad
    panel_w, panel_h = GRID_COLUMNS * cell_w, len(classes) * cell_h
    cols = min(PANELS_PER_ROW, len(panels))
    rows = math.ceil(len(panels) / cols)
    canvas = Image.new("RGB", (label_w + cols * (panel_w + gap), rows * (title_h + panel_h + gap)),
                       "white")
    draw = ImageDraw.Draw(canvas)
    for i, (title, images, labels) in enumerate(panels):
        x0 = label_w + (i % cols) * (panel_w + gap)
        y0 = (i // cols) * (title_h + panel_h + gap) + title_h
        # grey behind the tiles: the padding shows even around white (adipose, empty) tiles
        draw.rectangle((x0 - pad, y0 - pad, x0 + panel_w - 1, y0 + panel_h - 1), fill=(200,) * 3)
        draw.text((x0, y0 - title_h + 2), title, fill="black", font=font)
        if images is None:
            draw.rectangle((x0 - pad, y0 - pad, x0 + panel_w - 1, y0 + panel_h - 1),
                           fill=(235,) * 3)
            draw.text((x0 + panel_w // 2, y0 + panel_h // 2), labels, fill="black", font=font, anchor="mm")
            continue
        for r, cls in enumerate(classes):
            if i % cols == 0:
                draw.text((2, y0 + r * cell_h + cell_h // 2), names[cls] if cls < len(names)
                          else str(cls), fill="black", font=font, anchor="lm")
            for k, idx in enumerate(np.flatnonzero(labels == cls)[:GRID_COLUMNS]):
                tile = Image.fromarray(images[idx].squeeze(-1) if images.shape[-1] == 1
                                       else images[idx]).convert("RGB")
                canvas.paste(tile.resize((w * scale, h * scale), Image.NEAREST),
                             (x0 + k * cell_w, y0 + r * cell_h))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


@_plain_text
def confusion_matrices(data: SuiteData, t: DatasetTables) -> bytes | None:
    """Per method: the confusion matrix averaged over its evaluations, rows normalised (recall)."""
    mats = {}
    for m in t.methods:
        stack = [np.asarray(e.record["confusion"], float) for e in data.evals_of(t.dataset, m)
                 if e.record.get("confusion")]
        if stack and len({s.shape for s in stack}) == 1:
            mats[m] = np.mean(stack, axis=0)
    if not mats:
        return None
    n_rows, n_cols = next(iter(mats.values())).shape
    fig, axes = _figure(len(mats), axis_w=0.3 * n_cols + 0.3, axis_h=0.3 * n_rows + 0.3,
                        left=1.0, bottom=1.0, right=0.9)
    names = _class_names(data.evals_of(t.dataset)[0])
    col_names = list(t.classes) if n_cols == len(t.classes) else names[:n_cols]
    for ax, (method, mat) in zip(axes, mats.items()):
        recall = mat / np.maximum(mat.sum(axis=1, keepdims=True), 1e-12)
        image = ax.imshow(recall, cmap="Blues", vmin=0, vmax=1)
        if n_rows * n_cols <= 144:
            for (i, j), v in np.ndenumerate(recall):
                ax.text(j, i, f"{v:.2f}".lstrip("0") if v < 1 else "1", ha="center", va="center",
                        fontsize=6, color="white" if v > 0.6 else "black")
        ax.set_xticks(range(n_cols), col_names, rotation=60, fontsize=7, ha="right")
        ax.set_yticks(range(n_rows), list(t.classes)[:n_rows], fontsize=7)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("target", fontsize=8)
        ax.set_title(method, fontsize=9)
    width, height = fig.get_size_inches()
    cax = fig.add_axes((1 - 0.65 / width, 0.3, 0.12 / width, 0.4))
    fig.colorbar(image, cax=cax).set_label("fraction of target class", fontsize=8)
    return _png(fig)


@_plain_text
def strip_plots(data: SuiteData, t: DatasetTables) -> bytes | None:
    """One panel per metric: every observation, coloured by train seed, the mean as a bar."""
    obs = data.observations
    obs = obs[(obs.dataset == t.dataset) & obs.value.notna()] if not obs.empty else obs
    if obs.empty:
        return None
    fig, axes = _figure(len(t.metrics), axis_w=0.45 * len(t.methods) + 0.6, axis_h=2.6,
                        left=0.8, bottom=1.1)
    jitter = np.random.default_rng(0)
    colors = {k: f"C{i % 10}" for i, k in enumerate(sorted(obs.train_seed.unique()))}
    for ax, metric in zip(axes, t.metrics):
        for x, method in enumerate(t.methods):
            cell = obs[(obs.metric == metric) & (obs.method == method)]
            if cell.empty:
                ax.text(x, 0.5, t.row_status[method] if t.row_n[method] == 0 else "not computed",
                        transform=ax.get_xaxis_transform(), rotation=90, ha="center",
                        va="center", fontsize=8, color="#b3261e")
                continue
            xs = x + jitter.uniform(-0.15, 0.15, len(cell))
            ax.scatter(xs, cell.value, s=14, c=[colors[k] for k in cell.train_seed], alpha=0.8)
            ax.hlines(cell.value.mean(), x - 0.3, x + 0.3, color="black", lw=1.5)
        if metric in t.reference:
            ax.axhline(t.reference[metric], ls="--", color="grey", lw=1)
            ax.annotate("real data", (1, t.reference[metric]), xycoords=("axes fraction", "data"),
                        ha="right", va="bottom", fontsize=7, color="grey")
        ax.set_xticks(range(len(t.methods)), t.methods, rotation=35, ha="right", fontsize=7)
        ax.set_title(f"{metric} {arrow(metric)}".strip(), fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    if len(colors) > 1:
        axes[0].legend(handles=[axes[0].scatter([], [], c=c, s=14, label=f"train seed {k}")
                                for k, c in colors.items()], fontsize=7, loc="best")
    return _png(fig)


def _read_losses(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The run's training loss by step: from its TensorBoard events, or from train_log.jsonl for a run
    trained before bench wrote events."""
    if "loss" in (curves := read_curves(run_dir)):
        steps, losses = curves["loss"]
        return np.array(steps, float), np.array(losses, float)
    steps, losses = [], []
    path = run_dir / LOG_FILE
    if not path.is_file():
        return np.array([]), np.array([])
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
            steps.append(float(row["step"]))
            losses.append(float(row["loss"]))
        except (ValueError, KeyError, TypeError):
            continue    # a torn last line of a run still writing
    return np.array(steps), np.array(losses)


@_plain_text
def loss_curves(data: SuiteData, t: DatasetTables) -> bytes | None:
    """Training loss of every run, one colour per method, EMA-smoothed, log y."""
    import pandas as pd

    curves = []
    for i, method in enumerate(t.methods):
        for run in data.runs_of(t.dataset, method):
            steps, loss = _read_losses(run.run_dir)
            if len(steps):
                span = max(1.0, LOSS_SMOOTHING * len(loss))
                curves.append((i, method, steps, pd.Series(loss).ewm(span=span).mean().to_numpy()))
    if not curves:
        return None
    fig, (ax,) = _figure(1, axis_w=7.5, axis_h=3.6, left=0.9, bottom=0.6, top=0.2)
    labelled = set()
    for i, method, steps, smooth in curves:
        ax.plot(steps, smooth, color=f"C{i % 10}", lw=1.2, alpha=0.9,
                label=None if method in labelled else method)
        labelled.add(method)
    positive = all((c[3] > 0).all() for c in curves)
    ax.set_yscale("log" if positive else "symlog")
    # Log-scale ticks are mathtext ("$10^{-2}$"), shown raw with mathtext off (_plain_text): plain numbers instead.
    from matplotlib.ticker import FuncFormatter
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)   # a curve often spans less than a decade: label 0.02, 0.03, ... too
    ax.set_xlabel("step")
    ax.set_ylabel(f"training loss (EMA, span {LOSS_SMOOTHING:.0%} of steps)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _png(fig)


def feature_accuracy(data: SuiteData, t: DatasetTables) -> list[tuple[str, Evaluation, dict]]:
    """(method, evaluation, arrays) of each method's showcased features.npz: phi (levels, N, D) of
    held-out real images, their labels, the noise levels t and the nearest-centroid accuracy at each."""
    out = []
    for method, e in showcase(data, t, FEATURES_FILE).items():
        with np.load(e.eval_dir / FEATURES_FILE) as npz:
            out.append((method, e, {k: npz[k] for k in ("phi", "labels", "t", "accuracy")}))
    return out


@_plain_text
def feature_pca(data: SuiteData, t: DatasetTables) -> bytes | None:
    """2-D PCA of phi of held-out real images coloured by class: one panel per method and noise level,
    titled with the level's nearest-centroid accuracy."""
    panels = [(method, e, arrays, k) for method, e, arrays in feature_accuracy(data, t)
              for k in range(len(arrays["t"]))]
    if not panels:
        return None
    fig, axes = _figure(len(panels), axis_w=3.4, axis_h=3.0, left=0.7, bottom=0.6)
    for ax, (method, e, arrays, k) in zip(axes, panels):
        phi, labels = arrays["phi"][k].astype(np.float64), arrays["labels"]
        centred = phi - phi.mean(axis=0)
        _, sv, vt = np.linalg.svd(centred, full_matrices=False)
        coords = centred @ vt[:2].T
        explained = sv[:2] ** 2 / max((sv ** 2).sum(), 1e-12)
        names = _class_names(e)
        for c in np.unique(labels):
            pts = coords[labels == c]
            ax.scatter(pts[:, 0], pts[:, -1], s=10, alpha=0.8,
                       label=names[c] if c < len(names) else str(c))
        ax.set_xlabel(f"PC1 ({explained[0]:.0%})", fontsize=8)
        ax.set_ylabel(f"PC2 ({explained[-1]:.0%})", fontsize=8)
        ax.set_title(f"{method}: t = {int(arrays['t'][k])}, nearest-centroid acc "
                     f"{float(arrays['accuracy'][k]):.2f}", fontsize=8)
        ax.legend(fontsize=6, markerscale=1.2)
    return _png(fig)


def nearest_pairs(data: SuiteData, t: DatasetTables) -> bytes | None:
    """copy_rate's closest pairs (nearest.npz of each method's showcased evaluation): per method and
    space (pixels, scorer features) one row of generated images, each beside its nearest training
    image, captioned with its normalised distance / the copy threshold (<= 1: counted as a copy). Drawn
    with PIL at an integer scale, as the sample grids."""
    from PIL import Image, ImageDraw, ImageFont

    chosen = showcase(data, t, NEAREST_FILE)
    if not chosen:
        return None
    rows = []   # (label, generated, train, ratio)
    for method, e in chosen.items():
        with np.load(e.eval_dir / NEAREST_FILE) as npz:
            spaces = sorted({k.rpartition("_")[0] for k in npz.files})
            rows += [(f"{method} ({space}), train seed {e.train_seed}, gen seed {e.gen_seed}",
                      npz[f"{space}_generated"], npz[f"{space}_train"], npz[f"{space}_ratio"]) for space in spaces]
    h, w = rows[0][1].shape[1:3]
    scale, pad, gap, title_h, caption_h = max(1, 64 // max(h, w)), 2, 14, 18, 16
    font = ImageFont.load_default(size=12)
    pair_w = 2 * (w * scale + pad) + gap
    n_pairs = max(len(generated) for _, generated, _, _ in rows)
    row_h = title_h + h * scale + caption_h + gap
    caption = ": generated | nearest training image, normalised distance / copy threshold"
    width = max(n_pairs * pair_w, 4 + max(int(font.getlength(label + caption)) for label, *_ in rows))
    canvas = Image.new("RGB", (width, len(rows) * row_h), "white")
    draw = ImageDraw.Draw(canvas)

    def tile(image: np.ndarray) -> Image.Image:
        tile = Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).convert("RGB")
        return tile.resize((w * scale, h * scale), Image.NEAREST)

    for r, (label, generated, train, ratio) in enumerate(rows):
        y0 = r * row_h
        draw.text((2, y0 + 2), label + caption, fill="black", font=font)
        for k in range(len(generated)):
            x0 = k * pair_w
            canvas.paste(tile(generated[k]), (x0, y0 + title_h))
            canvas.paste(tile(train[k]), (x0 + w * scale + pad, y0 + title_h))
            draw.text((x0, y0 + title_h + h * scale + 1), f"{ratio[k]:.2f}", fill="black", font=font)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


FIGURES = (("samples", "Samples (one row per class, same seeds for every method), after real images "
            "of the scored split", sample_grids),
           ("confusion", "Confusion matrices of the scoring classifier (mean over evaluations, rows = target)",
            confusion_matrices),
           ("strip", "Every observation per metric (bar = mean, colour = train seed)", strip_plots),
           ("loss", "Training loss", loss_curves),
           ("phi_pca", "PCA of a method's features phi of held-out real images, by class", feature_pca),
           ("nearest", "Memorisation: generated images closest to a training image (copy_rate), each beside its "
            "nearest training image", nearest_pairs),
           ("large", "Large images (bench sample-large, Graikos et al. 2024): a real large image beside one generated "
            "on the embeddings of its tiles; seam score 1 = tile borders like interiors, above 1 = seams", large_images))
