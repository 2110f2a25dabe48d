"""The pseudo-task switch: the Lightning callback that decides when a gated regularizer is on."""

from __future__ import annotations

import lightning as L


class PseudoTaskSwitch(L.Callback):
    """Turns a gated regularizer on once the epoch-mean training CE falls below T; keeps it on.

    The paper (Section 2.2) starts the pseudo-task "when L_ce falls below a certain threshold
    of average epoch loss T" (T = 1 in all its experiments). The epoch mean is the module's
    ``epoch_ce`` (a torchmetrics ``MeanMetric``, synced across ranks, so every rank decides
    alike). The decision is written into the regularizer (:meth:`Regularizer.switch`), whose
    state_dict carries it into every checkpoint; this callback keeps no state of its own.
    """

    def __init__(self, threshold: float) -> None:
        self.threshold = float(threshold)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        regularizer = pl_module.regularizer
        if not regularizer.active and float(pl_module.epoch_ce.compute()) < self.threshold:
            regularizer.switch(True, trainer.current_epoch)
