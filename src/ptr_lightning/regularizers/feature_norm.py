"""The fixed-weight L2 feature-norm penalty of Hariharan & Girshick."""

from __future__ import annotations

from torch import Tensor

from ptr_lightning.core import names
from ptr_lightning.core.settings import check, non_negative
from ptr_lightning.regularizers.base import Regularizer, StepTensors


class FeatureNorm(Regularizer):
    """Feature-norm penalty (Hariharan & Girshick, "Low-shot Visual Recognition by Shrinking
    and Hallucinating Features", ICCV 2017: their squared-gradient-magnitude loss is, for a
    softmax classifier, a per-example weighted ``||phi(x)||^2``; the plain L2 penalty on the
    feature representation is its unweighted form)::

        L = L_ce + weight * mean_j ||rep_j||_2^2

    with a fixed ``weight`` (lambda), on from the first step, no balancing. This is the likelier
    reading of the PtR paper's FNP baseline ("feature norm penalty [10]"; its Section 5 says
    PtR, unlike FNP, "also balances objectives automatically"); ``regularizer=fnp`` is the other
    reading, PtR's balancing with zero targets. Neither paper gives lambda for fine-tuning:
    ``weight`` is a hyperparameter to sweep.
    """

    feature_term = True
    RULES = {"weight": non_negative("regularizer.weight", " (lambda)")}

    def __init__(self, weight: float = 1e-3) -> None:
        super().__init__()
        check(self.RULES, weight=weight)
        self.weight = float(weight)

    def forward(self, ce_loss: Tensor, step: StepTensors) -> tuple[Tensor, dict[str, Tensor]]:
        norm_sq = step.features.float().square().sum(dim=1).mean()
        term = self.weight * norm_sq
        return ce_loss + term.to(ce_loss.dtype), {
            names.TRAIN_REG_LOSS: term.detach(),
            names.FEATURE_NORM_SQ: norm_sq.detach(),
        }
