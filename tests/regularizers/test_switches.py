"""The pseudo-task switch rules, through the real Trainer where Lightning's call order matters."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import torch
from torchmetrics import MeanMetric

from ptr_lightning.core import names
from ptr_lightning.regularizers import PseudoTask
from ptr_lightning.regularizers.switches import LatchSwitch
from ptr_lightning.run.build import build_module
from ptr_lightning.run.train import train


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
    LatchSwitch(1.0).on_train_epoch_end(SimpleNamespace(current_epoch=0), module)
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
    assert "LatchSwitch" not in str(state["callbacks"])  # one home: the regularizer

    _, resumed, seen = fit(2, ckpt_path=ckpt)
    assert resumed.regularizer.active and resumed.regularizer.switch_epoch == 0
    assert seen and set(seen) == {True}  # the very first resumed step already has PtR on


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


def test_every_switch_rule_says_why_a_run_never_switched_on():
    from ptr_lightning.core.switch_rules import NEVER_ON_BECAUSE, never_switched_on
    from ptr_lightning.regularizers.switches import SWITCHES

    assert SWITCHES.keys() == NEVER_ON_BECAUSE.keys()
    assert never_switched_on("lr_drop") == (
        "the pseudo-task never switched on (lr_drop: the learning rate never dropped)"
    )
    assert "regularizer.T" in never_switched_on(None)  # latch, the default
