"""Training curves as TensorBoard event files, beside each run's checkpoints: `tensorboard --logdir
results/<suite>` shows every run of a suite, named by its folder (data set / method / train seed / run).

Each logged step's scalars (the loss and the method's other loss terms, lr, the gradient norm, the EMA
of the loss; at a checkpoint the val loss, `val/loss`: bench/engine/train.py) are written when the
training checkpoints, together with train_log.jsonl and after the resumable state: a training killed
between two checkpoints resumes from the last one having written no step beyond it, so a resumed run's
curves (the val loss's too) continue without a duplicated step.
"""
from __future__ import annotations

from pathlib import Path

from bench.core.store import CURVES_DIR

LOSS_EMA_DECAY = 0.9    # per logged step: the EMA of the loss spans about 10 log lines


def write_curves(run_dir: Path, rows: list[dict]) -> None:
    """Append `rows` (a train_log.jsonl line each: "step" and scalars) to the run's event files."""
    if not rows:
        return
    from torch.utils.tensorboard import SummaryWriter   # tensorboard's writer: loaded where a run trains
    with SummaryWriter(str(run_dir / CURVES_DIR)) as writer:
        for row in rows:
            for tag, value in row.items():
                if tag not in ("step", "time_s"):
                    writer.add_scalar(tag, value, row["step"], walltime=None)


def read_curves(run_dir: Path) -> dict[str, tuple[list[int], list[float]]]:
    """tag -> (steps, values) of a run's event files, in step order ({} without any)."""
    folder = run_dir / CURVES_DIR
    if not folder.is_dir():
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})   # 0: keep every step
    events.Reload()
    curves = {}
    for tag in events.Tags()["scalars"]:
        points = sorted((e.step, e.value) for e in events.Scalars(tag))
        curves[tag] = ([s for s, _ in points], [v for _, v in points])
    return curves
