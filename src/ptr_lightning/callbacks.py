"""The pseudo-task switch: the Lightning callbacks that decide when a gated regularizer is on,
and the one that records the cross-entropy around the switch.

One callback class per rule (``regularizer.switch``, :data:`SWITCHES`). Each decides once per
epoch and writes the decision into the regularizer (:meth:`Regularizer.switch`), whose
state_dict carries it into every checkpoint; the switch callbacks keep no state of their own,
so a resumed run decides exactly as the uninterrupted one.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import lightning as L
from torch import Tensor

from ptr_lightning import names
from ptr_lightning.settings import one_of


class PseudoTaskSwitch(L.Callback):
    """``latch`` (the paper): on once the epoch-mean training CE falls below T; stays on.

    The paper (Section 2.2) starts the pseudo-task "when L_ce falls below a certain threshold
    of average epoch loss T" (T = 1 in all its experiments). The epoch mean is the module's
    ``epoch_ce`` (a torchmetrics ``MeanMetric``, synced across ranks, so every rank decides
    alike). Decided at the end of each epoch, before the module steps the learning-rate
    schedule and before the epoch's checkpoint is written.
    """

    def __init__(self, threshold: float) -> None:
        self.threshold = float(threshold)

    def below_threshold(self, pl_module: L.LightningModule) -> bool:
        return float(pl_module.epoch_ce.compute()) < self.threshold

    def decide(self, trainer: L.Trainer, pl_module: L.LightningModule) -> bool:
        return pl_module.regularizer.active or self.below_threshold(pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.regularizer.switch(self.decide(trainer, pl_module), trainer.current_epoch)


class EpochSwitch(PseudoTaskSwitch):
    """``epoch``: re-decided every epoch, on while the epoch-mean CE is below T (off again
    when it rises above)."""

    def decide(self, trainer: L.Trainer, pl_module: L.LightningModule) -> bool:
        return self.below_threshold(pl_module)


class LearningRateDropSwitch(PseudoTaskSwitch):
    """``lr_drop``: on from the first learning-rate reduction of the schedule, for good.

    The module steps the schedule after the callbacks' epoch end, so this rule decides at the
    start of the next epoch, from the schedule's state (restored from the checkpoint on
    resume); the decision is recorded as taken at the end of the previous epoch. T is unused.
    """

    def decide(self, trainer: L.Trainer, pl_module: L.LightningModule) -> bool:
        return pl_module.regularizer.active or pl_module.lr_schedulers().reduced

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.regularizer.switch(self.decide(trainer, pl_module), trainer.current_epoch - 1)


SWITCHES: dict[str, type[PseudoTaskSwitch]] = {
    "latch": PseudoTaskSwitch,
    "epoch": EpochSwitch,
    "lr_drop": LearningRateDropSwitch,
}
SWITCH_RULE = one_of("regularizer.switch", SWITCHES, " (when the pseudo-task is on)")


class SwitchWindow(L.Callback):
    """``train/ce_around_switch``: the cross-entropy of each of the ``window`` steps before the
    first switch-on and of the ``window`` steps from it, each at its own step.

    ``metrics.csv`` keeps ``train/ce`` only every ``trainer.log_every_n_steps`` steps; the jump
    of the CE when PtR comes on needs every step. The last ``window`` values are kept (device
    scalars: no host sync per step) until the first step with the pseudo-task on, then written
    to the loggers; the steps after it are written when the window is full or training ends.
    Steps not yet written are in the checkpoint (this callback's state), so a resumed run
    loses none.
    """

    def __init__(self, window: int) -> None:
        self.window = int(window)
        self.before: deque[tuple[int, Tensor | float]] = deque(maxlen=self.window)
        self.after: list[tuple[int, Tensor | float]] = []
        self.after_left: int | None = None  # steps still to record from the switch; None: before

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        if self.after_left == 0:
            return
        entry = (int(outputs["step"]), outputs[names.TRAIN_CE])
        if self.after_left is None:
            if not pl_module.regularizer.active:
                self.before.append(entry)
                return
            self.write(pl_module, list(self.before))
            self.before.clear()
            self.after_left = self.window
        self.after.append(entry)
        self.after_left -= 1
        if self.after_left == 0:
            self.write(pl_module, self.after)
            self.after = []

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write(pl_module, self.after)
        self.after = []

    def write(
        self, pl_module: L.LightningModule, entries: list[tuple[int, Tensor | float]]
    ) -> None:
        for step, ce in entries:
            pl_module.log_at(step, {names.TRAIN_CE_AROUND_SWITCH: ce})

    def state_dict(self) -> dict[str, Any]:
        return {
            "before": [(step, float(ce)) for step, ce in self.before],
            "after": [(step, float(ce)) for step, ce in self.after],
            "after_left": self.after_left,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.before = deque(map(tuple, state["before"]), maxlen=self.window)
        self.after = [tuple(entry) for entry in state["after"]]
        self.after_left = state["after_left"]
