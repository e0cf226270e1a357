"""Training curves in TensorBoard: every training writes event files beside its checkpoints, the report
reads them back, and a resumed training continues its curves without a duplicated step; the val loss at
each checkpoint leaves the training bitwise as it was."""
import dataclasses
import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bench.core.seeds import VAL_LOSS_SEED
from bench.core.store import CHECKPOINT_FILE, CURVES_DIR, LOG_FILE
from bench.engine.curves import read_curves
from bench.engine.train import Trainer, load_model, train_model, val_subset
from test_train import Interrupt

TAGS = {"loss", "lr", "grad_norm", "loss_ema", "val/loss"}


def raw_steps(run_dir, tag: str) -> list[int]:
    """Every event of `tag` as written, duplicates kept (the reader's purge of a restart switched off)."""
    events = EventAccumulator(str(run_dir / CURVES_DIR), size_guidance={"scalars": 0}, purge_orphaned_data=False)
    events.Reload()
    return [e.step for e in events.Scalars(tag)]


def test_a_resumed_training_continues_its_curves_without_a_duplicated_step(toy_data, tiny_config, tmp_path):
    cfg = dataclasses.replace(tiny_config, train=dataclasses.replace(
        tiny_config.train, steps=6, checkpoint_every=2, log_every=1))
    straight, resumed = tmp_path / "a", tmp_path / "b"
    straight.mkdir(), resumed.mkdir()
    train_model(cfg, "baseline", 0, toy_data, straight)

    def crash_after_5(step, total):   # step 5 is logged, not checkpointed: its curve point must wait
        if step == 5:
            raise Interrupt
    with pytest.raises(Interrupt):
        train_model(cfg, "baseline", 0, toy_data, resumed, on_step=crash_after_5)
    assert raw_steps(resumed, "loss") == [1, 2, 3, 4] and raw_steps(resumed, "val/loss") == [2, 4]
    train_model(cfg, "baseline", 0, toy_data, resumed)
    assert raw_steps(resumed, "loss") == [1, 2, 3, 4, 5, 6]
    assert raw_steps(resumed, "val/loss") == [2, 4, 6]                # each checkpoint's, once
    a, b = read_curves(straight), read_curves(resumed)
    assert TAGS <= set(a) and a == b          # the resumed training's curves are the same, bit for bit
    logged = [json.loads(line) for line in (straight / LOG_FILE).read_text().splitlines()]
    assert a["loss"] == ([r["step"] for r in logged], pytest.approx([r["loss"] for r in logged]))
    ema = a["loss_ema"][1]
    assert ema[0] == pytest.approx(logged[0]["loss"]) and ema[1] == pytest.approx(0.9 * ema[0] + 0.1 * logged[1]["loss"])
    assert all(g > 0 for g in a["grad_norm"][1])


@pytest.mark.parametrize("ema_decay", [0.99, 0.0])
def test_the_val_loss_at_each_checkpoint_is_the_checkpoints_and_leaves_training_bitwise_as_it_was(
        ema_decay, toy_data, tiny_config, tmp_path, monkeypatch):
    cfg = dataclasses.replace(tiny_config, train=dataclasses.replace(
        tiny_config.train, steps=6, checkpoint_every=4, log_every=3, batch_size=16, ema_decay=ema_decay))
    (tmp_path / "with").mkdir(), (tmp_path / "without").mkdir()
    train_model(cfg, "baseline", 0, toy_data, tmp_path / "with")
    assert raw_steps(tmp_path / "with", "val/loss") == [4, 6]   # the resumable state at 4, the final weights at 6
    logged = {r["step"]: r for r in map(json.loads, (tmp_path / "with" / LOG_FILE).read_text().splitlines())}
    assert list(logged) == [3, 4, 6] and "val/loss" not in logged[3] and {"val/loss", "loss"} <= set(logged[4])

    monkeypatch.setattr(Trainer, "val_loss", lambda self: {})   # the same training without it
    train_model(cfg, "baseline", 0, toy_data, tmp_path / "without")
    assert (tmp_path / "with" / CHECKPOINT_FILE).read_bytes() == (tmp_path / "without" / CHECKPOINT_FILE).read_bytes()
    without = [json.loads(line) for line in (tmp_path / "without" / LOG_FILE).read_text().splitlines()]
    assert [r["loss"] for r in without] == [r["loss"] for r in logged.values()]

    # the final one is the method's loss of the saved (sampling) weights on the val subset, in one batch here
    built = load_model(cfg, "baseline", toy_data, tmp_path / "with", torch.device("cpu"))
    x0, labels = val_subset(toy_data, "cpu")
    with torch.no_grad():
        loss = built.method.loss(built.model, built.schedule, x0, labels, torch.Generator().manual_seed(VAL_LOSS_SEED))
    assert len(labels) == len(toy_data.val_y) < 16
    assert logged[6]["val/loss"] == pytest.approx(float(loss["loss"]), rel=1e-6)
