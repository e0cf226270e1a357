"""The report's figure of large images (`bench sample-large`, bench/engine/large_task.py): for every run that has
them, each setting and generation seed, the real large image beside the one generated on its embeddings, with
both seam scores and the setting's patch FID/KID. Drawn with PIL at an integer scale, as the sample grids."""
from __future__ import annotations

import io
import json

import numpy as np

from bench.core.store import LARGE_DIR, LARGE_IMAGES_FILE, PATCH_METRICS_FILE, SEAMS_FILE
from bench.report.collect import SuiteData
from bench.report.stats import paired_test
from bench.report.tables import DatasetTables

SIDE = 256          # px a large image is scaled up to, at least (nearest neighbour, whole factors)


def _rows(data: SuiteData, t: DatasetTables) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(title, caption, real, generated) of every seed of every setting of every run of the data set."""
    rows = []
    for method in t.methods:
        for run in data.runs_of(t.dataset, method):
            for setting in sorted((run.run_dir / LARGE_DIR).glob("*")):
                patch = setting / PATCH_METRICS_FILE
                scores = json.loads(patch.read_text()) if patch.is_file() else {"metrics": {}, "provenance": {}}
                patch_text = ", ".join(f"{k} {v:.4g}" for k, v in scores["metrics"].items())
                if patch_text:
                    patch_text += (f" ({scores['provenance']['n_gen']} crops against "
                                   f"{scores['provenance']['n_ref']})")
                seeds = {int(p.name.partition("=")[2]): p for p in setting.glob("seed=*") if (p / SEAMS_FILE).is_file()}
                seams = {s: json.loads((p / SEAMS_FILE).read_text())["seam_score"] for s, p in sorted(seeds.items())}
                test = paired_test(*({(run.train_seed, s): v[side] for s, v in seams.items()}
                                     for side in ("generated", "real")))
                if test.n_units >= 2:
                    patch_text += (f"; seam score generated - real {test.delta:+.3g} [{test.ci_low:.3g}, "
                                   f"{test.ci_high:.3g}], p {test.p:.2g} ({test.n_units} seeds, {test.test})")
                for s, score in seams.items():
                    with np.load(seeds[s] / LARGE_IMAGES_FILE) as npz:
                        real, generated = npz["real"], npz["generated"]
                    title = f"{method}, train seed {run.train_seed}, {setting.name}, gen seed={s}: real | generated"
                    caption = (f"seam score real {score['real']:.3g}, generated {score['generated']:.3g}"
                               + (f"; {patch_text.lstrip('; ')}" if patch_text else ""))
                    rows.append((title, caption, real, generated))
    return rows


def large_images(data: SuiteData, t: DatasetTables) -> bytes | None:
    from PIL import Image, ImageDraw, ImageFont

    rows = _rows(data, t)
    if not rows:
        return None
    font = ImageFont.load_default(size=12)
    line, gap = 16, 10
    scale = max(1, SIDE // rows[0][2].shape[0])
    h, w = rows[0][2].shape[0] * scale, rows[0][2].shape[1] * scale
    width = max(2 * w + gap, 4 + max(int(font.getlength(text)) for title, caption, *_ in rows
                                     for text in (title, caption)))
    row_h = line + h + line + 2 * gap
    canvas = Image.new("RGB", (width, len(rows) * row_h), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (title, caption, real, generated) in enumerate(rows):
        y0 = r * row_h
        draw.text((2, y0 + 2), title, fill="black", font=font)
        for x0, image in ((0, real), (w + gap, generated)):
            tile = Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).convert("RGB")
            canvas.paste(tile.resize((w, h), Image.NEAREST), (x0, y0 + line))
        draw.text((2, y0 + line + h + 2), caption, fill="black", font=font)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()
