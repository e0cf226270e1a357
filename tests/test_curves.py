"""Training curves in TensorBoard: every training writes event files beside its checkpoints, the report
reads them back, and a resumed training continues its curves without a duplicated step."""
import dataclasses
import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bench.core.store import CURVES_DIR, LOG_FILE
from bench.engine.curves import read_curves
from bench.engine.train import train_model
from test_train import Interrupt

TAGS = {"loss", "lr", "grad_norm", "loss_ema"}


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
    assert raw_steps(resumed, "loss") == [1, 2, 3, 4]
    train_model(cfg, "baseline", 0, toy_data, resumed)
    assert raw_steps(resumed, "loss") == [1, 2, 3, 4, 5, 6]
    a, b = read_curves(straight), read_curves(resumed)
    assert TAGS <= set(a) and a == b          # the resumed training's curves are the same, bit for bit
    logged = [json.loads(line) for line in (straight / LOG_FILE).read_text().splitlines()]
    assert a["loss"] == ([r["step"] for r in logged], pytest.approx([r["loss"] for r in logged]))
    ema = a["loss_ema"][1]
    assert ema[0] == pytest.approx(logged[0]["loss"]) and ema[1] == pytest.approx(0.9 * ema[0] + 0.1 * logged[1]["loss"])
    assert all(g > 0 for g in a["grad_norm"][1])
