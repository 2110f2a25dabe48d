"""Pairwise Confusion: pull together the predictions of pairs of images from different classes."""

from __future__ import annotations

from torch import Tensor

from ptr_lightning.core import names
from ptr_lightning.core.settings import Rule, check
from ptr_lightning.regularizers.base import Regularizer, StepTensors


class PairwiseConfusion(Regularizer):
    """Pairwise Confusion, Euclidean variant (Dubey et al., "Pairwise Confusion for Fine-Grained
    Visual Classification", ECCV 2018, Section 3).

    The batch is split in halves; sample ``i`` of the first half is paired with sample ``i`` of
    the second (an odd last sample is left out). With ``p = softmax(logits)`` over ``K``
    classes and the paper's Euclidean Confusion ``D_EC(p_i, p_j) = ||p_i - p_j||_2^2``
    (squared), counted only for pairs from different classes (``gamma_ij = [y_i != y_j]``)::

        L = L_ce + lambda * (1 / 2n) * sum_{pairs (i, j)} gamma_ij * ||p_i - p_j||_2^2
        lambda = weight * K

    with ``n = B // 2`` pairs. The confusion weight grows with the number of classes, as the
    authors advise ("the optimal range of operation for pairwise loss is 0.1N to 0.2N, where N
    is the number of classes", README of github.com/abhimanyudubey/confusion): ``weight`` is
    that factor, default 0.1 (lambda = 20 on CUB-200, 10.2 on Flowers-102, 1 on the 10 digits),
    the low end of their range. The ``1 / 2n`` is the paper's per-pair
    objective ``L_ce(x_i) + L_ce(x_j) + lambda * gamma_ij * D_EC`` averaged per *sample*, to
    match the batch-mean ``L_ce``; the authors' code also divides the pair sum by the batch
    size (but uses the unsquared norm and no class mask).
    """

    # At most 1 (lambda <= N, five times the authors' upper end): a value from when weight was
    # lambda itself (e.g. 10) fails instead of silently training with lambda = 10 N.
    RULES = {
        "weight": Rule(
            "regularizer.weight",
            lambda v: 0 <= v <= 1,
            "in [0, 1]: lambda / number of classes (the authors advise 0.1 to 0.2)",
        )
    }

    def __init__(self, weight: float = 0.1) -> None:
        super().__init__()
        check(self.RULES, weight=weight)
        self.weight = float(weight)

    def forward(self, ce_loss: Tensor, step: StepTensors) -> tuple[Tensor, dict[str, Tensor]]:
        n = step.logits.shape[0] // 2
        probs = step.logits[: 2 * n].float().softmax(dim=-1)
        different = (step.labels[:n] != step.labels[n : 2 * n]).to(probs.dtype)
        distance = (probs[:n] - probs[n:]).pow(2).sum(dim=-1)
        confusion = (different * distance).sum() / max(2 * n, 1)
        term = self.weight * step.logits.shape[-1] * confusion
        pairs = different.sum()
        mean_distance = (different * distance).sum() / pairs.clamp_min(1)
        return ce_loss + term, {
            names.TRAIN_REG_LOSS: term.detach(),
            "pc/distance_sq": mean_distance.detach(),
            "pc/pairs": pairs.detach(),
        }
