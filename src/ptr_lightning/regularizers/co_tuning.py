"""Co-Tuning: train the source classifier on too, with targets translated from the target labels."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ptr_lightning.core import names
from ptr_lightning.core.settings import check, non_negative
from ptr_lightning.core.tensors import at_least_float32, evaluating
from ptr_lightning.regularizers.base import Regularizer, StepTensors
from ptr_lightning.regularizers.source_model import (
    last_linear_outputs,
    require_source_classifier,
    source_head,
)


class CoTuning(Regularizer):
    """Co-Tuning (You, Kou, Jiang, Wang & Long, "Co-Tuning for Transfer Learning", NeurIPS 2020).

    ``L = L_ce + weight * mean_i KL(r[y_i] || softmax(source_head(rep_i)))``: ``y_i`` is the
    target label of image i, ``rep_i`` its feature tensor, ``source_head`` a trainable copy of
    the source classifier (with the head modules before it, VGG's dropout) on the shared
    features, trained with the rest (its parameters are this module's only trainable ones and
    must be given to the optimizer). ``r`` is the category relationship ``p(y_s | y_t)``, a
    (target classes x source classes) matrix learned once before training by the paper's direct
    approach: row c is the mean of the source model's class probabilities over the target
    training images of class c (:meth:`fit_to_target`, the pre-trained backbone and source
    classifier in eval mode, the images as evaluation sees them). The paper's loss is the
    cross-entropy ``-sum_s r[y, s] log q_s``; the KL differs from it by the entropy of ``r[y]``,
    a constant, so the gradients are the same and the logged value is 0 when the source head
    agrees with the relationship. Default ``weight = 2.3``, the trade-off of the authors' code
    (Transfer-Learning-Library's ``co_tuning``). The paper's "reverse approach" (a calibrated
    classifier from source probabilities to target labels, inverted) is not implemented.

    ``relationship`` is a persistent buffer: computed before a run's first step, it comes back
    from the checkpoint when the run resumes (and is not recomputed from the trained model).
    Needs a meaningful source classifier, like LwF: ``model.weights=imagenet`` or a checkpoint
    with its source head.
    """

    RULES = {"weight": non_negative("regularizer.weight")}

    def __init__(self, weight: float = 2.3) -> None:
        super().__init__()
        check(self.RULES, weight=weight)
        self.weight = float(weight)
        self.source_head: nn.Module | None = None
        self._backbone: tuple[nn.Module] | None = None  # referenced, owned by the LightningModule

    def attach(self, backbone: nn.Module, head: nn.Module, source_classifier: nn.Module) -> None:
        source_classifier = require_source_classifier("Co-Tuning", source_classifier)
        self._backbone = (backbone,)
        self.source_head = source_head(head, source_classifier)
        shape = (last_linear_outputs(head), last_linear_outputs(source_classifier))
        dtype = next(source_classifier.parameters()).dtype
        uniform = torch.full(shape, 1.0 / shape[1], dtype=dtype)
        self.register_buffer("relationship", uniform, persistent=True)

    def _attached(self) -> tuple[nn.Module, nn.Module]:
        if self._backbone is None or self.source_head is None:
            raise RuntimeError("CoTuning.attach must run before the relationship or a step")
        return self._backbone[0], self.source_head

    @torch.no_grad()
    def fit_to_target(self, batches: Iterable[tuple[Tensor, Tensor]]) -> None:
        """``relationship[c]``: the mean source-class probabilities of the target class c's
        training images (a class without images keeps the uniform row)."""
        backbone, source = self._attached()
        sums = torch.zeros_like(self.relationship, dtype=torch.float64)
        counts = torch.zeros(len(sums), dtype=torch.float64, device=sums.device)
        with evaluating(backbone, source):
            for images, labels in batches:
                probs = at_least_float32(source(backbone(images))).softmax(dim=-1)
                sums.index_add_(0, labels, probs.to(sums.dtype))
                counts.index_add_(0, labels, torch.ones_like(labels, dtype=counts.dtype))
        seen = counts > 0
        self.relationship[seen] = (sums[seen] / counts[seen, None]).to(self.relationship.dtype)

    def forward(self, ce_loss: Tensor, step: StepTensors) -> tuple[Tensor, dict[str, Tensor]]:
        _, source = self._attached()
        log_q = F.log_softmax(at_least_float32(source(step.features)), dim=-1)
        target = self.relationship[step.labels].to(log_q.dtype)
        kl = F.kl_div(log_q, target, reduction="batchmean")
        term = self.weight * kl
        return ce_loss + term, {names.TRAIN_REG_LOSS: term.detach(), "co_tuning/kl": kl.detach()}
