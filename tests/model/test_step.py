"""The training step: one backward through the backbone per step, PtR on or off."""

from __future__ import annotations

import lightning as L
import torch
from hydra.utils import instantiate

from ptr_lightning.run.build import build_module


class RecordSteps(L.Callback):
    def __init__(self, counter: list[int]) -> None:
        self.counter, self.per_step = counter, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.before = self.counter[0]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.per_step.append((pl_module.regularizer.active, self.counter[0] - self.before))


def test_backbone_is_back_propagated_once_per_step(make_cfg, tmp_path):
    cfg = make_cfg("regularizer.T=100", "trainer.max_epochs=2")
    datamodule = instantiate(cfg.dataset)
    datamodule.setup("fit")
    module = build_module(cfg, datamodule)
    counter = [0]
    first_layer = module.backbone.conv1

    def count(*_):
        counter[0] += 1

    first_layer.register_full_backward_hook(count)
    recorder = RecordSteps(counter)
    trainer = L.Trainer(
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        callbacks=[*module.regularizer.callbacks(), recorder],
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=datamodule)

    assert {active for active, _ in recorder.per_step} == {False, True}
    assert all(backward_calls == 1 for _, backward_calls in recorder.per_step), recorder.per_step


def test_optimizer_is_sgd_with_momentum_weight_decay_and_head_lr_multiplier(make_cfg):
    cfg = make_cfg("model.head_lr_mult=10", "model.lr=0.01")
    module = build_module(cfg, instantiate(cfg.dataset))
    optimizer = module.configure_optimizers()["optimizer"]
    assert isinstance(optimizer, torch.optim.SGD)
    backbone_group, head_group = optimizer.param_groups
    assert backbone_group["lr"] == 0.01 and head_group["lr"] == 0.1
    assert backbone_group["momentum"] == 0.9
    assert backbone_group["weight_decay"] == cfg.model.weight_decay == 1e-4
    assert {id(p) for p in head_group["params"]} == {id(p) for p in module.head.parameters()}


def test_l2sp_replaces_weight_decay_and_lwf_trains_its_old_head(make_cfg):
    l2sp = build_module(make_cfg("regularizer=l2sp"), instantiate(make_cfg().dataset))
    assert all(
        group["weight_decay"] == 0.0
        for group in l2sp.configure_optimizers()["optimizer"].param_groups
    )

    lwf = build_module(make_cfg("regularizer=lwf"), instantiate(make_cfg().dataset))
    groups = lwf.configure_optimizers()["optimizer"].param_groups
    assert len(groups) == 3 and all(group["weight_decay"] == 1e-4 for group in groups)
    trainable = {id(p) for p in lwf.regularizer.parameters() if p.requires_grad}
    assert trainable and {id(p) for p in groups[2]["params"]} == trainable
