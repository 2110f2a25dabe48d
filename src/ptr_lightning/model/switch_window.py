"""``train/ce_around_switch``: the cross-entropy of every step on both sides of the first
switch-on of a gated regularizer, which ``trainer.log_every_n_steps`` would thin out."""

from __future__ import annotations

from collections import deque
from typing import Any

import lightning as L
from torch import Tensor

from ptr_lightning.core import names


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
