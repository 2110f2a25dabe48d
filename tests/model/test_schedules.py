"""The learning-rate schedules, through the real Trainer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ptr_lightning.core import names
from ptr_lightning.model.schedules import MilestoneLR, PaperPlateauLR
from ptr_lightning.run.train import train
from tests.fixtures.run_folders import learning_rates


def test_step_schedule_drops_every_groups_rate_at_its_milestones(make_cfg):
    cfg = make_cfg(
        "scheduler=step",
        "trainer.max_epochs=4",
        "model.lr=0.01",
        "model.head_lr_mult=10",
        "regularizer=none",
    )
    train(cfg)
    run = Path(cfg.paths.output_dir)
    assert learning_rates(run) == pytest.approx([0.01, 0.01, 0.001, 0.0001])
    assert learning_rates(run, "head") == pytest.approx([0.1, 0.1, 0.01, 0.001])


# min_delta=10: no change of val/loss or val/acc counts as progress, so every validated epoch
# after the first is a plateau epoch; patience 1 makes each one act.
PLATEAU = ["scheduler.patience=1", "scheduler.min_delta=10", "model.lr=0.01", "regularizer=none"]


def test_plateau_schedule_reduces_twice_then_stops_training(make_cfg):
    cfg = make_cfg(*PLATEAU, "trainer.max_epochs=10")
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    assert learning_rates(run) == pytest.approx([0.01, 0.01, 0.001, 0.0001])
    assert metrics["epochs"] == 4  # stopped at the plateau after the second reduction


def test_plateau_schedule_ignores_epochs_without_validation(make_cfg):
    cfg = make_cfg(*PLATEAU, "trainer.max_epochs=6", "trainer.check_val_every_n_epoch=2")
    train(cfg)
    # validated after epochs 1 (the first: progress), 3 and 5 (plateaus)
    lrs = learning_rates(Path(cfg.paths.output_dir))
    assert lrs == pytest.approx([0.01, 0.01, 0.01, 0.01, 0.001, 0.001])


def test_a_stopped_schedule_stays_stopped_when_resumed(make_cfg, tmp_path):
    cfg = make_cfg(*PLATEAU, "trainer.max_epochs=10")
    train(cfg)
    run = Path(cfg.paths.output_dir)
    stopped = json.loads((run / names.METRICS_FILE).read_text())
    resumed = train(make_cfg(f"resume={run}", out="resume-log"), ["trainer.max_epochs=20"])
    assert resumed["epochs"] == stopped["epochs"] == 4
    assert torch.load(run / names.LAST_CHECKPOINT, weights_only=True)["epoch"] == 3


def test_plateau_counts_an_epoch_as_progress_if_either_metric_improves():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    schedule = PaperPlateauLR(optimizer, patience=1)
    for loss, acc in [(1.0, 0.5), (1.1, 0.6), (0.9, 0.4)]:  # acc improves, then loss
        schedule.end_epoch({names.VAL_LOSS: loss, names.VAL_ACC: acc})
    assert optimizer.param_groups[0]["lr"] == 1.0
    restored = PaperPlateauLR(optimizer, patience=1)
    restored.load_state_dict(schedule.state_dict())
    assert restored.best_loss == pytest.approx(0.9) and restored.best_acc == pytest.approx(0.6)


def test_milestones_are_fractions_of_max_epochs():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    schedule = MilestoneLR(optimizer, [0.5, 0.75], gamma=0.1, max_epochs=20)
    lrs = []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])  # the rate each epoch trains with
        optimizer.step()
        schedule.end_epoch(None)
    assert lrs[9] == 1.0 and lrs[10] == pytest.approx(0.1)  # from epoch 10 of 20
    assert lrs[14] == pytest.approx(0.1) and lrs[15] == pytest.approx(0.01)  # from epoch 15
    assert not schedule.stopped
