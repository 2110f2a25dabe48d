"""Plain fine-tuning: no regularizer beyond weight decay."""

from __future__ import annotations

from torch import Tensor

from ptr_lightning.regularizers.base import Regularizer, StepTensors


class NoRegularizer(Regularizer):
    """``L = L_ce`` (the paper's fine-tuning baseline)."""

    def forward(self, ce_loss: Tensor, step: StepTensors) -> tuple[Tensor, dict[str, Tensor]]:
        return ce_loss, {}
