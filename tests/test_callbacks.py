"""The pseudo-task switch (latch + checkpoint) and the learning-rate schedules."""

from __future__ import annotations

from types import SimpleNamespace

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from ptr_lightning.callbacks import MilestoneSchedule, PaperPlateauSchedule, PseudoTaskSwitch
from ptr_lightning.train import build_module


def fake_trainer(epoch: int = 0, **metrics: float):
    strategy = SimpleNamespace(reduce=lambda t, reduce_op: t)
    return SimpleNamespace(
        current_epoch=epoch,
        strategy=strategy,
        callback_metrics={k.replace("_", "/"): torch.tensor(v) for k, v in metrics.items()},
        optimizers=[torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)],
        max_epochs=20,
        should_stop=False,
        sanity_checking=False,
    )


class FakeModule:
    def __init__(self) -> None:
        self.regularizer = SimpleNamespace(active=False)
        self.device = torch.device("cpu")
        self.logged: dict[str, float] = {}

    def log(self, key, value, **_):
        self.logged[key] = value


def run_epoch(switch, trainer, module, ces, batch=4):
    for ce in ces:
        switch.on_train_batch_end(
            trainer, module, {"ce": torch.tensor(ce), "batch_size": batch}, None, 0
        )
    switch.on_train_epoch_end(trainer, module)


def test_switch_uses_epoch_mean_and_latches_on():
    switch, module = PseudoTaskSwitch(threshold=1.0), FakeModule()
    run_epoch(switch, fake_trainer(0), module, [1.5, 0.6])  # mean 1.05: stays off
    assert not switch.active and not module.regularizer.active
    assert module.logged["ptr/epoch_ce"] == pytest.approx(1.05)
    run_epoch(switch, fake_trainer(1), module, [1.2, 0.7])  # mean 0.95 < 1: on
    assert switch.active and module.regularizer.active and switch.switch_epoch == 1
    run_epoch(switch, fake_trainer(2), module, [5.0, 5.0])  # CE rises again: stays on
    assert switch.active and module.regularizer.active and switch.switch_epoch == 1


def test_switch_weighs_batches_by_size():
    switch, module = PseudoTaskSwitch(threshold=1.0), FakeModule()
    switch.on_train_batch_end(None, module, {"ce": torch.tensor(0.5), "batch_size": 20}, None, 0)
    switch.on_train_batch_end(None, module, {"ce": torch.tensor(3.0), "batch_size": 2}, None, 1)
    switch.on_train_epoch_end(fake_trainer(0), module)  # (10 + 6) / 22 < 1
    assert switch.active


def test_switch_state_round_trips_through_a_real_checkpoint(make_cfg, tmp_path):
    cfg = make_cfg("regularizer.T=100", "trainer.max_epochs=1")
    datamodule = instantiate(cfg.dataset)
    datamodule.setup("fit")

    def fit(max_epochs, ckpt_path=None):
        module = build_module(cfg, datamodule)
        switch = PseudoTaskSwitch(threshold=100.0)
        seen = []
        probe = L.Callback()
        probe.on_train_batch_start = lambda tr, pl, *a: seen.append(pl.regularizer.active)
        trainer = L.Trainer(
            max_epochs=max_epochs,
            logger=False,
            enable_progress_bar=False,
            num_sanity_val_steps=0,
            default_root_dir=tmp_path,
            callbacks=[switch, probe],
        )
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        return trainer, switch, seen

    trainer, switch, seen = fit(1)
    assert switch.active and set(seen) == {False}
    ckpt = tmp_path / "after-switch.ckpt"
    trainer.save_checkpoint(ckpt)
    assert torch.load(ckpt, weights_only=True)["callbacks"]["PseudoTaskSwitch"]["active"]

    _, resumed, seen = fit(2, ckpt_path=ckpt)
    assert resumed.active and resumed.switch_epoch == 0
    assert seen and set(seen) == {True}  # the very first resumed step already has PtR on


def validate_then_end_epoch(schedule, trainer, module):
    schedule.on_validation_epoch_end(trainer, module)
    schedule.on_train_epoch_end(trainer, module)


def test_epochs_without_validation_do_not_count_towards_patience():
    schedule, trainer, module = PaperPlateauSchedule(patience=2), fake_trainer(), FakeModule()
    trainer.callback_metrics = {"val/loss": torch.tensor(1.0), "val/acc": torch.tensor(0.5)}
    for epoch in range(6):  # validation every 2nd epoch; the metrics never improve after it
        trainer.current_epoch = epoch
        if epoch % 2 == 0:
            schedule.on_validation_epoch_end(trainer, module)
        schedule.on_train_epoch_end(trainer, module)
    # validated epochs 0 (best), 2 and 4 (two plateaus): the first reduction after epoch 4
    assert schedule.reductions == 1 and schedule.bad_epochs == 0


def test_a_stopped_schedule_stays_stopped_after_resume():
    schedule, trainer, module = (
        PaperPlateauSchedule(patience=1, max_reductions=0),
        fake_trainer(),
        FakeModule(),
    )
    for epoch in range(2):
        trainer.current_epoch = epoch
        trainer.callback_metrics = {"val/loss": torch.tensor(1.0), "val/acc": torch.tensor(0.5)}
        validate_then_end_epoch(schedule, trainer, module)
    assert trainer.should_stop
    restored, resumed = PaperPlateauSchedule(patience=1, max_reductions=0), fake_trainer()
    restored.load_state_dict(schedule.state_dict())
    restored.on_train_start(resumed, module)
    assert resumed.should_stop


def test_plateau_reduces_twice_then_stops():
    schedule = PaperPlateauSchedule(patience=2, factor=0.1, max_reductions=2)
    trainer = fake_trainer()
    module = FakeModule()
    history = []
    # improving, then flat forever
    for epoch, (loss, acc) in enumerate([(1.0, 0.5), (0.9, 0.6)] + [(0.95, 0.55)] * 8):
        trainer.current_epoch = epoch
        trainer.callback_metrics = {"val/loss": torch.tensor(loss), "val/acc": torch.tensor(acc)}
        validate_then_end_epoch(schedule, trainer, module)
        history.append((trainer.optimizers[0].param_groups[0]["lr"], trainer.should_stop))
        if trainer.should_stop:
            break
    lrs = [round(lr, 6) for lr, _ in history]
    assert lrs == [1.0, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01, 0.01]
    assert [stop for _, stop in history] == [False] * 7 + [True]


def test_plateau_counts_an_epoch_as_progress_if_either_metric_improves():
    schedule = PaperPlateauSchedule(patience=1)
    trainer, module = fake_trainer(), FakeModule()
    for epoch, (loss, acc) in enumerate([(1.0, 0.5), (1.1, 0.6), (0.9, 0.4)]):  # acc, then loss
        trainer.current_epoch = epoch
        trainer.callback_metrics = {"val/loss": torch.tensor(loss), "val/acc": torch.tensor(acc)}
        validate_then_end_epoch(schedule, trainer, module)
    assert trainer.optimizers[0].param_groups[0]["lr"] == 1.0
    restored = PaperPlateauSchedule(patience=1)
    restored.load_state_dict(schedule.state_dict())
    assert restored.best_loss == pytest.approx(0.9) and restored.best_acc == pytest.approx(0.6)


def test_milestones_are_fractions_of_max_epochs():
    schedule, module = MilestoneSchedule([0.5, 0.75], gamma=0.1), FakeModule()
    trainer = fake_trainer()
    lrs = []
    for epoch in range(20):
        trainer.current_epoch = epoch
        schedule.on_train_epoch_end(trainer, module)
        lrs.append(trainer.optimizers[0].param_groups[0]["lr"])
    assert lrs[8] == 1.0 and lrs[9] == pytest.approx(0.1)  # after epoch 10 of 20
    assert lrs[13] == pytest.approx(0.1) and lrs[14] == pytest.approx(0.01)  # after epoch 15
    assert not trainer.should_stop
