"""Stop training at a non-finite loss, before a bad update reaches a checkpoint."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch import Tensor, nn

from ptr_lightning.core import names
from ptr_lightning.core.errors import NonFiniteLossError

NO_STEP = -1


class NonFiniteGuard(nn.Module):
    """Watches the loss of every training step.

    Immediate (the default off a GPU): the loss is read every step, and the bad step stops
    before its update, so the weights stay finite. Deferred (the default on a GPU, where reading
    a device value every step stalls the pipeline): the first bad step is recorded on the
    device and read at the next sync point, every ``every`` steps and at every epoch's end
    before its checkpoint is written; the weights in memory may then hold the bad updates, the
    checkpoint never does. Under DDP every rank stops together.
    """

    def __init__(self, defer: bool | None = None, every: int = 50) -> None:
        super().__init__()
        self.defer, self.every = defer, every
        self.register_buffer("first_bad_step", torch.tensor(NO_STEP), persistent=False)
        self.register_buffer("ce_was_bad", torch.tensor(False), persistent=False)

    def deferred(self, device: torch.device) -> bool:
        return device.type == "cuda" if self.defer is None else self.defer

    def observe(self, trainer: L.Trainer, ce: Tensor, total: Tensor) -> None:
        """After the step's loss is known, before its backward."""
        bad = ~torch.isfinite(total.detach())
        if self.deferred(total.device):
            first = (self.first_bad_step == NO_STEP) & bad
            self.first_bad_step.copy_(torch.where(first, trainer.global_step, self.first_bad_step))
            self.ce_was_bad.copy_(torch.where(first, ~torch.isfinite(ce.detach()), self.ce_was_bad))
            if trainer.global_step % self.every == 0:
                self.check(trainer)
            return
        if self._any_rank(trainer, bad):
            ce_bad = not bool(torch.isfinite(ce.detach()))
            value = float(ce) if ce_bad else float((total - ce).detach())
            raise NonFiniteLossError(
                f"non-finite loss at step {trainer.global_step} (epoch {trainer.current_epoch}, "
                f"batch {trainer.fit_loop.epoch_loop.batch_idx}): {culprit(ce_bad)} is {value}. "
                f"The weights were not updated; {_checkpoint_note(trainer)}. {ADVICE}"
            )

    def check(self, trainer: L.Trainer) -> None:
        """A sync point of the deferred mode: raise if a bad step was recorded (on any rank)."""
        if not self.deferred(self.first_bad_step.device):
            return
        if not self._any_rank(trainer, self.first_bad_step != NO_STEP):
            return
        step = int(self.first_bad_step)  # -1 on a rank that saw none
        where = f"at step {step}" if step != NO_STEP else "on another rank"
        raise NonFiniteLossError(
            f"non-finite loss {where} ({culprit(bool(self.ce_was_bad))}), found at step "
            f"{trainer.global_step} (epoch {trainer.current_epoch}); the weights in memory "
            f"took the bad updates since, {_checkpoint_note(trainer)}. {ADVICE}"
        )

    @staticmethod
    def _any_rank(trainer: L.Trainer, flag: Tensor) -> bool:
        flag = flag.float()
        if trainer.world_size > 1:  # every rank must stop together, or the others hang
            flag = trainer.strategy.reduce(flag, reduce_op="max")
        return bool(flag)


ADVICE = "Lower model.lr, or check the data and the regularizer's settings."


def culprit(ce_bad: bool) -> str:
    return names.TRAIN_CE if ce_bad else "the regularizer's term"


def _checkpoint_note(trainer: L.Trainer) -> str:
    if (Path(trainer.default_root_dir) / names.LAST_CHECKPOINT).is_file():
        return f"the last checkpoint ({names.LAST_CHECKPOINT}) is from before it"
    return "no checkpoint was written yet (the first epoch had not ended)"
