"""The pseudo-task switch: the Lightning callbacks that decide when a gated regularizer is on.

One callback class per rule (``regularizer.switch``, :data:`SWITCHES`). Each decides once per
epoch and writes the decision into the regularizer (:meth:`Regularizer.switch`), whose
state_dict carries it into every checkpoint; the switch callbacks keep no state of their own,
so a resumed run decides exactly as the uninterrupted one.
"""

from __future__ import annotations

import lightning as L


class PseudoTaskSwitch(L.Callback):
    """A switch rule: :meth:`decide` once per epoch, at the end of each epoch (before the module
    steps the learning-rate schedule and before the epoch's checkpoint is written), unless the
    rule decides at the start of the next one (:attr:`decides_at_epoch_start`)."""

    decides_at_epoch_start = False

    def __init__(self, threshold: float) -> None:
        self.threshold = float(threshold)

    def below_threshold(self, pl_module: L.LightningModule) -> bool:
        return float(pl_module.epoch_ce.compute()) < self.threshold

    def decide(self, trainer: L.Trainer, pl_module: L.LightningModule) -> bool:
        raise NotImplementedError

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.decides_at_epoch_start:
            pl_module.regularizer.switch(self.decide(trainer, pl_module), trainer.current_epoch)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.decides_at_epoch_start:
            # Recorded as decided at the end of the previous epoch.
            decision = self.decide(trainer, pl_module)
            pl_module.regularizer.switch(decision, trainer.current_epoch - 1)


class LatchSwitch(PseudoTaskSwitch):
    """``latch`` (the paper): on once the epoch-mean training CE falls below T; stays on.

    The paper (Section 2.2) starts the pseudo-task "when L_ce falls below a certain threshold
    of average epoch loss T" (T = 1 in all its experiments). The epoch mean is the module's
    ``epoch_ce`` (a torchmetrics ``MeanMetric``, synced across ranks, so every rank decides
    alike).
    """

    def decide(self, trainer: L.Trainer, pl_module: L.LightningModule) -> bool:
        return pl_module.regularizer.active or self.below_threshold(pl_module)


class EpochSwitch(PseudoTaskSwitch):
    """``epoch``: re-decided every epoch, on while the epoch-mean CE is below T (off again
    when it rises above)."""

    def decide(self, trainer: L.Trainer, pl_module: L.LightningModule) -> bool:
        return self.below_threshold(pl_module)


class LearningRateDropSwitch(PseudoTaskSwitch):
    """``lr_drop``: on from the first learning-rate reduction of the schedule, for good.

    The module steps the schedule after the callbacks' epoch end, so this rule decides at the
    start of the next epoch, from the schedule's state (restored from the checkpoint on
    resume). T is unused.
    """

    decides_at_epoch_start = True

    def decide(self, trainer: L.Trainer, pl_module: L.LightningModule) -> bool:
        return pl_module.regularizer.active or pl_module.lr_schedulers().reduced


SWITCHES: dict[str, type[PseudoTaskSwitch]] = {
    "latch": LatchSwitch,
    "epoch": EpochSwitch,
    "lr_drop": LearningRateDropSwitch,
}
