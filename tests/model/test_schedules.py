"""The learning-rate schedules, through the real Trainer."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
import torch

from ptr_lightning.core import names
from ptr_lightning.core.errors import ConfigError
from ptr_lightning.model.schedules import MilestoneLR, PaperPlateauLR, WarmupCosineLR
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


def cosine_rates(**settings) -> list[float]:
    """The rates of WarmupCosineLR (base rate 1) after 0, 1, 2, ... of its units."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    schedule = WarmupCosineLR(optimizer, **settings)
    rates = []
    for _ in range(schedule.total + 1):
        rates.append(optimizer.param_groups[0]["lr"])
        schedule.end_step()
        schedule.end_epoch(None)
    return rates


def test_cosine_schedule_warms_up_linearly_then_decays_to_its_floor():
    rates = cosine_rates(max_epochs=5, warmup=2, start_factor=0.1, min_factor=0.2)
    # warm-up 0.1 -> 1 over 2 epochs; then 0.2 + 0.8 (1 + cos(pi t)) / 2, t = 0, 1/3, 2/3, 1
    assert rates == pytest.approx([0.1, 0.55, 1.0, 0.8, 0.4, 0.2])
    steps = cosine_rates(max_epochs=2, warmup=3, interval="step", steps_per_epoch=lambda: 4)
    assert steps[:4] == pytest.approx([0.01, 0.34, 0.67, 1.0])
    assert steps[4:] == pytest.approx([(1 + math.cos(math.pi * t / 5)) / 2 for t in range(1, 6)])


def test_cosine_schedule_resumes_where_its_checkpoint_left_it():
    def schedule() -> WarmupCosineLR:
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        return WarmupCosineLR(optimizer, max_epochs=6, warmup=2)

    run, resumed = schedule(), schedule()
    for _ in range(3):
        run.end_epoch(None)
    resumed.load_state_dict(torch.load(io_of(run.state_dict()), weights_only=True))
    run.end_epoch(None)
    resumed.end_epoch(None)
    assert resumed.get_last_lr() == run.get_last_lr() == pytest.approx([0.5])
    assert resumed.reduced and not schedule().reduced


def io_of(state: dict) -> io.BytesIO:
    """``state`` saved as a checkpoint holds it."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"warmup": -1}, r"scheduler.warmup=-1.*>= 0"),
        ({"interval": "batch"}, r"scheduler.interval='batch'.*'step'"),
        ({"min_factor": 1.0}, r"scheduler.min_factor=1.0.*\[0, 1\)"),
    ],
)
def test_cosine_schedule_refuses_bad_settings(setting, message):
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    with pytest.raises(ConfigError, match=message):
        WarmupCosineLR(optimizer, max_epochs=3, **setting)
