"""Learning-rate schedules, stepped by the LightningModule after every step and every epoch.

Lightning never steps schedulers under manual optimization, but it does checkpoint the ones
``configure_optimizers`` returns; the schedules here are returned there, so their state
(milestones passed, plateau counters, steps taken, whether training has stopped) is in every
checkpoint. Each is built as ``schedule(optimizer, steps_per_epoch=...)`` (``steps_per_epoch``:
a callable giving the optimizer steps of one epoch, read only by a schedule that counts steps),
answers ``end_step()`` after each optimizer step and ``end_epoch(validation)``, with this
epoch's validation metrics or ``None`` when the epoch had no validation, and has ``stopped``
and ``reduced`` (the rate was lowered once).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, MultiStepLR

from ptr_lightning.core import names
from ptr_lightning.core.settings import Rule, check, fraction, integer, non_negative, one_of

StepsPerEpoch = Callable[[], int] | None


class EpochSchedule:
    """A schedule that acts at epoch ends only: nothing to do after a step."""

    def end_step(self) -> None:
        return None


class MilestoneLR(EpochSchedule, MultiStepLR):
    """x ``gamma`` after fixed fractions of ``max_epochs`` (e.g. ``[0.5, 0.75]``): torch's
    ``MultiStepLR`` at ``round(fraction * max_epochs)`` epochs; training runs to the end."""

    RULES = {
        "milestones": Rule(
            "scheduler.milestones",
            lambda v: all(isinstance(f, int | float) and 0 < f < 1 for f in v),
            "a list of fractions of trainer.max_epochs in (0, 1)",
            kind="any",
        ),
        "gamma": fraction("scheduler.gamma"),
    }
    stopped = False

    def __init__(
        self,
        optimizer: Optimizer,
        milestones: Sequence[float],
        gamma: float,
        max_epochs: int,
        steps_per_epoch: StepsPerEpoch = None,
    ) -> None:
        check(self.RULES, milestones=list(milestones), gamma=gamma)
        epochs = [round(float(f) * max_epochs) for f in milestones]
        super().__init__(optimizer, milestones=epochs, gamma=gamma)

    def end_epoch(self, validation: Mapping[str, float] | None) -> None:
        self.step()

    @property
    def reduced(self) -> bool:
        return self.last_epoch >= min(self.milestones, default=math.inf)


class PaperPlateauLR(EpochSchedule):
    """The paper's schedule (Section 3.1): "A learning rate was decreased when the validation
    loss and validation accuracy stopped progressing and it was decreased twice before model
    training was terminated."

    After ``patience`` validated epochs in which neither ``val/loss`` fell nor ``val/acc`` rose
    (by more than ``min_delta``), every learning rate is multiplied by ``factor``; the plateau
    after the ``max_reductions``-th reduction sets :attr:`stopped` (``trainer.max_epochs`` also
    caps the run). Hand-written because torch's ``ReduceLROnPlateau`` watches one metric and
    never stops training.
    """

    RULES = {
        "patience": integer("scheduler.patience", 1),
        "factor": fraction("scheduler.factor"),
        "max_reductions": integer("scheduler.max_reductions", 0),
        "min_delta": non_negative("scheduler.min_delta"),
    }
    STATE = ("best_loss", "best_acc", "bad_epochs", "reductions", "stopped")

    def __init__(
        self,
        optimizer: Optimizer,
        patience: int = 5,
        factor: float = 0.1,
        max_reductions: int = 2,
        min_delta: float = 0.0,
        steps_per_epoch: StepsPerEpoch = None,
    ) -> None:
        check(
            self.RULES,
            patience=patience,
            factor=factor,
            max_reductions=max_reductions,
            min_delta=min_delta,
        )
        self.optimizer = optimizer
        self.patience, self.factor = int(patience), float(factor)
        self.max_reductions, self.min_delta = int(max_reductions), float(min_delta)
        self.best_loss, self.best_acc = math.inf, -math.inf
        self.bad_epochs, self.reductions = 0, 0
        self.stopped = False

    def end_epoch(self, validation: Mapping[str, float] | None) -> None:
        if validation is None:
            return  # no validation this epoch: nothing to judge
        loss, acc = float(validation[names.VAL_LOSS]), float(validation[names.VAL_ACC])
        improved = False
        if loss < self.best_loss - self.min_delta:
            self.best_loss, improved = loss, True
        if acc > self.best_acc + self.min_delta:
            self.best_acc, improved = acc, True
        self.bad_epochs = 0 if improved else self.bad_epochs + 1
        if self.bad_epochs < self.patience:
            return
        self.bad_epochs = 0
        if self.reductions >= self.max_reductions:
            self.stopped = True
            return
        self.reductions += 1
        for group in self.optimizer.param_groups:
            group["lr"] *= self.factor

    @property
    def reduced(self) -> bool:
        return self.reductions > 0

    def state_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.STATE}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in self.STATE:
            setattr(self, key, state[key])


class WarmupCosineLR(LambdaLR):
    """Linear warm-up, then cosine decay: how ConvNeXt, ViT and Swin are usually fine-tuned.

    Over the first ``warmup`` units (epochs or optimizer steps, ``interval``) every group's rate
    rises linearly from ``start_factor`` x its base rate to the base rate; then it follows
    ``min_factor + (1 - min_factor) (1 + cos(pi t)) / 2`` x the base rate, ``t`` going from 0
    to 1 at the end of ``max_epochs``. Each group keeps its own base rate (head multiplier,
    layer-wise decay). Training runs to ``max_epochs``. Hand-written as one closed form on
    torch's ``LambdaLR`` because chaining ``LinearLR`` and ``CosineAnnealingLR`` with
    ``SequentialLR`` restarts the cosine through the deprecated ``step(epoch)``.
    """

    RULES = {
        "warmup": integer("scheduler.warmup", 0),
        "interval": one_of("scheduler.interval", {"epoch", "step"}, " (the unit of warmup)"),
        "start_factor": Rule("scheduler.start_factor", lambda v: 0 < v <= 1, "in (0, 1]"),
        "min_factor": fraction("scheduler.min_factor", low_closed=True),
        "max_epochs": integer("scheduler.max_epochs", 1),
    }
    stopped = False

    def __init__(
        self,
        optimizer: Optimizer,
        max_epochs: int,
        warmup: int = 1,
        interval: str = "epoch",
        start_factor: float = 0.01,
        min_factor: float = 0.0,
        steps_per_epoch: StepsPerEpoch = None,
    ) -> None:
        check(
            self.RULES,
            warmup=warmup,
            interval=interval,
            start_factor=start_factor,
            min_factor=min_factor,
            max_epochs=max_epochs,
        )
        per_epoch = 1
        if interval == "step":
            if steps_per_epoch is None:
                raise ValueError("scheduler.interval=step needs the number of steps per epoch")
            per_epoch = steps_per_epoch()
        self.interval, self.warmup = interval, int(warmup)
        self.start_factor, self.min_factor = float(start_factor), float(min_factor)
        self.total = max(int(max_epochs) * per_epoch, self.warmup + 1)
        super().__init__(optimizer, self.factor)

    def factor(self, t: int) -> float:
        """The fraction of the base rate after ``t`` units."""
        if t < self.warmup:
            return self.start_factor + (1.0 - self.start_factor) * t / self.warmup
        progress = min((t - self.warmup) / (self.total - self.warmup), 1.0)
        return self.min_factor + (1.0 - self.min_factor) * 0.5 * (
            1.0 + math.cos(math.pi * progress)
        )

    def end_step(self) -> None:
        if self.interval == "step":
            self.step()

    def end_epoch(self, validation: Mapping[str, float] | None) -> None:
        if self.interval == "epoch":
            self.step()

    @property
    def reduced(self) -> bool:
        """Past the peak: the rate has begun to fall."""
        return self.last_epoch > self.warmup
