"""Batch Spectral Shrinkage: penalize the smallest singular values of the batch's features."""

from __future__ import annotations

import torch
from torch import Tensor

from ptr_lightning.core import names
from ptr_lightning.core.settings import check, integer, non_negative
from ptr_lightning.core.tensors import at_least_float32
from ptr_lightning.regularizers.base import Regularizer, StepTensors


class BatchSpectralShrinkage(Regularizer):
    """BSS (Chen, Wang, Fu, Long & Wang, "Catastrophic Forgetting Meets Negative Transfer: Batch
    Spectral Shrinkage for Safe Transfer Learning", NeurIPS 2019, Eq. 5).

    ``L = L_ce + eta * sum_{i=1..k} sigma_{-i}^2``, where ``sigma_{-i}`` is the i-th smallest
    singular value of the (B, D) feature matrix of the batch (there are ``min(B, D)``; ``k`` is
    capped at that). Shrinking the small spectral components suppresses the hardly
    transferable directions that cause negative transfer. Paper defaults: ``eta = 0.001``,
    ``k = 1``.

    The SVD runs in float32 (or float64 for float64 features) with autocast off: half-precision
    SVD is unsupported and too inexact for the smallest values.
    """

    RULES = {"eta": non_negative("regularizer.eta"), "k": integer("regularizer.k", 1)}

    def __init__(self, eta: float = 0.001, k: int = 1) -> None:
        super().__init__()
        check(self.RULES, eta=eta, k=k)
        self.eta, self.k = float(eta), int(k)

    def forward(self, ce_loss: Tensor, step: StepTensors) -> tuple[Tensor, dict[str, Tensor]]:
        features = step.features.flatten(1)
        with torch.autocast(device_type=features.device.type, enabled=False):
            sigma = torch.linalg.svdvals(at_least_float32(features))  # descending
        smallest = sigma[-min(self.k, sigma.numel()) :].pow(2).sum()
        term = self.eta * smallest
        return ce_loss + term, {
            names.TRAIN_REG_LOSS: term.detach(),
            "bss/smallest_sv_sq": smallest.detach(),
            "bss/largest_sv_sq": sigma[0].detach().pow(2),
        }
