"""Lightning callbacks: the pseudo-task switch and the paper's learning-rate schedules."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch


class PseudoTaskSwitch(L.Callback):
    """Turns a gated regularizer on once the epoch-mean training CE falls below T; keeps it on.

    The paper (Section 2.2) starts the pseudo-task "when L_ce falls below a certain threshold
    of average epoch loss T" (T = 1 in all its experiments). The mean is this callback's own
    sum and count, all-reduced across ranks so every rank switches at the same epoch, and kept
    in the checkpoint together with the switch.
    """

    def __init__(self, threshold: float) -> None:
        self.threshold = float(threshold)
        self.active = False
        self.switch_epoch: int | None = None
        self.ce_sum: float | torch.Tensor = 0.0  # a device tensor while an epoch runs
        self.count = 0

    @property
    def state_key(self) -> str:
        return "PseudoTaskSwitch"

    def _push(self, pl_module: L.LightningModule) -> None:
        pl_module.regularizer.active = self.active

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._push(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs: Any, batch, batch_idx) -> None:
        ce, n = outputs["ce"], outputs["batch_size"]
        # Summed on the device: reading the value every step would stall the GPU pipeline.
        self.ce_sum = self.ce_sum + ce.detach().double() * n
        self.count += n

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        ce_sum = torch.as_tensor(self.ce_sum, dtype=torch.float64, device=pl_module.device)
        count = torch.tensor(float(self.count), dtype=torch.float64, device=ce_sum.device)
        totals = torch.stack([ce_sum, count])
        totals = trainer.strategy.reduce(totals, reduce_op="sum")
        epoch_ce = (totals[0] / totals[1].clamp(min=1)).item()
        if not self.active and epoch_ce < self.threshold:
            self.active, self.switch_epoch = True, trainer.current_epoch
            self._push(pl_module)
        pl_module.log("ptr/epoch_ce", epoch_ce, on_epoch=True, sync_dist=False)
        self.ce_sum, self.count = 0.0, 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "switch_epoch": self.switch_epoch,
            "ce_sum": float(self.ce_sum),
            "count": self.count,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.active = bool(state_dict["active"])
        self.switch_epoch = state_dict.get("switch_epoch")
        self.ce_sum = float(state_dict["ce_sum"])
        self.count = int(state_dict["count"])


def scale_learning_rate(trainer: L.Trainer, factor: float) -> None:
    for optimizer in trainer.optimizers:
        for group in optimizer.param_groups:
            group["lr"] *= factor


class LearningRateSchedule(L.Callback):
    """Epoch-wise learning-rate decisions, stepped after validation (manual optimization never
    steps Lightning's schedulers). Subclasses decide; this base applies, logs and checkpoints.
    """

    state_keys: tuple[str, ...] = ()  # what must survive a resume, besides `stopped`
    stopped = False
    validated_epoch: int | None = None

    def decide(self, trainer: L.Trainer) -> tuple[float, bool]:
        """Return ``(factor to multiply every learning rate by, whether to stop now)``."""
        raise NotImplementedError

    def validated_this_epoch(self, trainer: L.Trainer) -> bool:
        # callback_metrics keep the last validation's values through epochs without one.
        return self.validated_epoch == trainer.current_epoch

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.validated_epoch = trainer.current_epoch

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A run resumed from the checkpoint of the epoch its schedule ended stays ended.
        if self.stopped:
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.log("lr", trainer.optimizers[0].param_groups[0]["lr"], on_epoch=True)
        factor, stop = self.decide(trainer)
        if factor != 1.0:
            scale_learning_rate(trainer, factor)
        if stop:
            self.stopped = trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in (*self.state_keys, "stopped")}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for key in self.state_keys:
            setattr(self, key, state_dict[key])
        self.stopped = state_dict.get("stopped", False)


class PaperPlateauSchedule(LearningRateSchedule):
    """The paper's schedule (Section 3.1): "A learning rate was decreased when the validation
    loss and validation accuracy stopped progressing and it was decreased twice before model
    training was terminated."

    After ``patience`` epochs in which neither ``val/loss`` fell nor ``val/acc`` rose (by more
    than ``min_delta``), the learning rate is multiplied by ``factor``; the plateau after the
    ``max_reductions``-th reduction stops training (``trainer.max_epochs`` also caps it).
    """

    state_keys = ("best_loss", "best_acc", "bad_epochs", "reductions")

    def __init__(
        self,
        patience: int = 5,
        factor: float = 0.1,
        max_reductions: int = 2,
        min_delta: float = 0.0,
    ) -> None:
        self.patience, self.factor = int(patience), float(factor)
        self.max_reductions, self.min_delta = int(max_reductions), float(min_delta)
        self.best_loss, self.best_acc = math.inf, -math.inf
        self.bad_epochs, self.reductions = 0, 0

    def decide(self, trainer: L.Trainer) -> tuple[float, bool]:
        metrics = trainer.callback_metrics
        if not self.validated_this_epoch(trainer) or "val/loss" not in metrics:
            return 1.0, False  # no validation this epoch: nothing to judge
        loss, acc = float(metrics["val/loss"]), float(metrics["val/acc"])
        improved = False
        if loss < self.best_loss - self.min_delta:
            self.best_loss, improved = loss, True
        if acc > self.best_acc + self.min_delta:
            self.best_acc, improved = acc, True
        self.bad_epochs = 0 if improved else self.bad_epochs + 1
        if self.bad_epochs < self.patience:
            return 1.0, False
        self.bad_epochs = 0
        if self.reductions >= self.max_reductions:
            return 1.0, True
        self.reductions += 1
        return self.factor, False


class MilestoneSchedule(LearningRateSchedule):
    """Multiply the learning rate by ``gamma`` at fixed fractions of ``trainer.max_epochs``
    (e.g. ``[0.5, 0.75]``), the step schedule most fine-tuning codebases use."""

    def __init__(self, milestones: list[float], gamma: float = 0.1) -> None:
        self.milestones, self.gamma = [float(f) for f in milestones], float(gamma)

    def decide(self, trainer: L.Trainer) -> tuple[float, bool]:
        epochs_done = trainer.current_epoch + 1
        hits = sum(round(f * trainer.max_epochs) == epochs_done for f in self.milestones)
        return self.gamma**hits, False
