"""Per-class FID/KID in the report: N per class shown, classes too small for a FID said so; the
classifiers' per-class recall of older stores is read as per-class acc[<classifier>]."""
import json

from test_report import make_store

from bench.report import build_report

FID_COUNTS = {"n_gen": {"tumor": 10, "stroma": 10}, "n_ref": {"tumor": 64, "stroma": 64}, "min_images": 1281,
              "min_images_rule": "feature dimension + 1: full-rank covariances"}


def _add_intra_class(root):
    """Per-class FID/KID as evaluate_samples writes them: FID null (10 < 1281 images a class)."""
    for path in root.glob("runs/**/metrics.json"):
        record = json.loads(path.read_text())
        record["per_class"]["fid[scorer]"] = {"tumor": None, "stroma": None}
        record["per_class"]["kid[scorer]"] = {"tumor": 0.02, "stroma": 0.01 + 0.001 * record["gen_seed"]}
        record["provenance"]["fid[scorer]"]["per_class"] = FID_COUNTS
        record["provenance"]["kid[scorer]"]["per_class"] = {**FID_COUNTS, "min_images": 2, "min_images_rule": ""}
        path.write_text(json.dumps(record))


def test_intra_class_tables_show_n_and_too_few_images(tmp_path):
    root = make_store(tmp_path)
    _add_intra_class(root)
    build_report(root)
    md = (root / "report" / "leaderboard.md").read_text()
    fid_table = md.split("### fid\\[scorer\\] per class ↓")[1].split("###")[0]
    assert "fewer than 1281 on a side (feature dimension + 1: full-rank covariances)" in fid_table
    assert "| baseline | too few images | too few images |" in fid_table
    assert "| *N* | 10 / 64 | 10 / 64 |" in fid_table
    kid_table = md.split("### kid\\[scorer\\] per class ↓")[1].split("###")[0]
    assert "| baseline | 0.0200 ± 0.0000 | 0.0110 ± 0.0010 |" in kid_table and "fewer than 2 on a side, so" in kid_table
    html = (root / "report" / "report.html").read_text()
    assert "<td>too few images</td>" in html and '<td class="label">N</td><td>10 / 64</td>' in html


def test_old_per_class_recall_is_read_as_per_class_accuracy(tmp_path):
    root = make_store(tmp_path)   # its metrics.json name the scorer's per-class recall recall[scorer]
    assert '"recall[scorer]"' in next(root.glob("runs/**/metrics.json")).read_text()
    report = build_report(root)
    assert set(report.tables[0].per_class) == {"acc[scorer]", "ssim"}
    md = (root / "report" / "leaderboard.md").read_text()
    html = (root / "report" / "report.html").read_text()
    assert "### acc\\[scorer\\] per class ↑" in md and "recall\\[scorer\\]" not in md
    assert "acc[scorer] per class" in html and "recall[scorer]" not in html
