"""The pseudo-task switch and the learning-rate schedules, through the real Trainer."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torchmetrics import MeanMetric

from ptr_lightning import names
from ptr_lightning.build import build_module
from ptr_lightning.callbacks import PseudoTaskSwitch
from ptr_lightning.regularizers import PseudoTask
from ptr_lightning.schedules import MilestoneLR, PaperPlateauLR
from ptr_lightning.train import train


def end_epoch(switch, module, epoch, ces, batch=4):
    module.epoch_ce.reset()
    for ce in ces:
        module.epoch_ce.update(torch.tensor(ce), weight=batch)
    switch.on_train_epoch_end(SimpleNamespace(current_epoch=epoch), module)


def test_switch_uses_the_epoch_mean_and_latches_on():
    regularizer = PseudoTask(R=3.0, T=1.0)
    (switch,) = regularizer.callbacks()
    module = SimpleNamespace(regularizer=regularizer, epoch_ce=MeanMetric())
    end_epoch(switch, module, 0, [1.5, 0.6])  # mean 1.05: stays off
    assert not regularizer.active and regularizer.switch_epoch is None
    end_epoch(switch, module, 1, [1.2, 0.7])  # mean 0.95 < 1: on
    assert regularizer.active and regularizer.switch_epoch == 1
    end_epoch(switch, module, 2, [5.0, 5.0])  # CE rises again: stays on
    assert regularizer.active and regularizer.switch_epoch == 1


def test_epoch_switch_turns_off_when_the_epoch_ce_rises_above_T():
    regularizer = PseudoTask(R=3.0, T=1.0, switch="epoch")
    (switch,) = regularizer.callbacks()
    module = SimpleNamespace(regularizer=regularizer, epoch_ce=MeanMetric())
    active = []
    for epoch, ces in enumerate([[1.5, 0.6], [0.9, 0.8], [2.5, 2.9], [0.4, 0.2]]):
        end_epoch(switch, module, epoch, ces)
        active.append(regularizer.active)
    assert active == [False, True, False, True]
    assert regularizer.switch_epoch == 1  # the first switch-on is kept


def test_switch_weighs_batches_by_size():
    regularizer = PseudoTask(R=3.0, T=1.0)
    module = SimpleNamespace(regularizer=regularizer, epoch_ce=MeanMetric())
    module.epoch_ce.update(torch.tensor(0.5), weight=20)
    module.epoch_ce.update(torch.tensor(3.0), weight=2)
    PseudoTaskSwitch(1.0).on_train_epoch_end(SimpleNamespace(current_epoch=0), module)
    assert regularizer.active  # (10 + 6) / 22 < 1; unweighted (0.5 + 3) / 2 would not be


def test_switch_state_lives_in_the_regularizer_and_round_trips_a_real_checkpoint(
    make_cfg, tmp_path
):
    from hydra.utils import instantiate

    cfg = make_cfg("regularizer.T=100", "trainer.max_epochs=1")
    datamodule = instantiate(cfg.dataset)
    datamodule.setup("fit")

    def fit(max_epochs, ckpt_path=None):
        module = build_module(cfg, datamodule)
        seen = []
        probe = L.Callback()
        probe.on_train_batch_start = lambda tr, pl, *a: seen.append(pl.regularizer.active)
        trainer = L.Trainer(
            max_epochs=max_epochs,
            logger=False,
            enable_progress_bar=False,
            enable_checkpointing=False,
            num_sanity_val_steps=0,
            default_root_dir=tmp_path,
            callbacks=[*module.regularizer.callbacks(), probe],
        )
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        return trainer, module, seen

    trainer, module, seen = fit(1)
    assert module.regularizer.active and set(seen) == {False}
    ckpt = tmp_path / "after-switch.ckpt"
    trainer.save_checkpoint(ckpt)
    state = torch.load(ckpt, weights_only=True)
    assert state["state_dict"]["regularizer._extra_state"]["active"] is True
    assert "PseudoTaskSwitch" not in str(state["callbacks"])  # one home: the regularizer

    _, resumed, seen = fit(2, ckpt_path=ckpt)
    assert resumed.regularizer.active and resumed.regularizer.switch_epoch == 0
    assert seen and set(seen) == {True}  # the very first resumed step already has PtR on


def learning_rates(run: Path, group: str = "backbone") -> list[float]:
    """The learning rate of each epoch, as LearningRateMonitor logged it."""
    with open(run / names.CSV_METRICS) as f:
        rows = [r for r in csv.DictReader(f) if r.get(f"{names.LR}/{group}")]
    return [float(r[f"{names.LR}/{group}"]) for r in rows]


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


def active_per_epoch(run: Path) -> list[float]:
    """ptr/active of each epoch's steps, as metrics.csv has it (TINY: 3 steps per epoch)."""
    with open(run / names.CSV_METRICS) as f:
        rows = [r for r in csv.DictReader(f) if r.get(names.PTR_ACTIVE)]
    by_epoch: dict[int, set[float]] = {}
    for r in rows:
        by_epoch.setdefault(int(r["epoch"]), set()).add(float(r[names.PTR_ACTIVE]))
    assert all(len(values) == 1 for values in by_epoch.values()), by_epoch
    return [by_epoch[e].pop() for e in sorted(by_epoch)]


def test_lr_drop_switch_is_on_from_the_first_reduction_and_a_resumed_run_agrees(make_cfg):
    """The rate drops after epoch 0 (milestone 1): PtR trains epochs 1 and 2. The run cut after
    epoch 0 (its checkpoint holds the lowered rate, PtR still off) and resumed decides alike."""
    common = (
        "regularizer.switch=lr_drop",
        "scheduler=step",
        "scheduler.milestones=[0.5]",
        "scheduler.max_epochs=2",
        "trainer.deterministic=true",
    )
    whole_cfg = make_cfg(*common, "trainer.max_epochs=3", out="whole")
    whole = train(whole_cfg)
    assert whole["ptr_switch_epoch"] == 0
    assert active_per_epoch(Path(whole_cfg.paths.output_dir)) == [0.0, 1.0, 1.0]

    cut_cfg = make_cfg(*common, "trainer.max_epochs=1", out="cut")
    cut = train(cut_cfg)
    run = Path(cut_cfg.paths.output_dir)
    assert cut["ptr_active"] is False
    resumed = train(make_cfg(f"resume={run}", out="resume-log"), ["trainer.max_epochs=3"])
    assert resumed["ptr_switch_epoch"] == 0
    keys = ["test/acc", "val/acc", "val/loss"]
    assert [resumed[k] for k in keys] == [whole[k] for k in keys]
