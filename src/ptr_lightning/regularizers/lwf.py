"""Learning without Forgetting: keep the source task's outputs while learning the target's."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ptr_lightning.core import names
from ptr_lightning.core.settings import check, non_negative, positive
from ptr_lightning.core.tensors import at_least_float32
from ptr_lightning.regularizers.base import Regularizer, StepTensors
from ptr_lightning.regularizers.source_model import (
    frozen,
    require_source_classifier,
    source_head,
)


class LearningWithoutForgetting(Regularizer):
    """LwF (Li & Hoiem, "Learning without Forgetting", ECCV 2016 / TPAMI 2017, Eq. 2).

    ``L = L_ce + weight * KL(softmax(y_o / T) || softmax(yhat_o / T))``, averaged over the
    batch: ``y_o`` are the frozen source network's logits on the step's images (the teacher),
    ``yhat_o = old_head(features)`` the logits of a trainable copy of the source classifier on
    the current shared features. The paper's "modified cross-entropy"
    ``-sum_i softmax(y_o/T)_i log softmax(yhat_o/T)_i`` differs from this KL only by the
    teacher's entropy, a constant: the gradients are the same, and the logged value is 0 when
    the two agree. As in the paper there is no Hinton ``T^2`` factor. Defaults from the paper:
    ``weight`` (lambda_o) = 1, ``T = 2``.

    :meth:`attach` builds, from the model as it is then (the pre-trained starting point):

    * ``teacher``: frozen copies of backbone, head modules before the last Linear (dropout) and
      ``source_classifier``; ``requires_grad=False`` and always in eval mode (so dropout is off
      and BatchNorm statistics stay the source's), whatever ``.train()`` is called with;
    * ``old_head``: the same head modules with a trainable copy of ``source_classifier``. Its
      parameters are this module's only trainable ones and must be given to the optimizer.

    Both are submodules, so they follow ``.to()`` and are saved in the checkpoint (this doubles
    the backbone's share of it). The targets are computed on the fly on the same (augmented)
    images rather than recorded once before training as in the paper. The paper's warm-up
    (training only the new head first) is not part of this module.

    Needs a meaningful source classifier: ``model.weights=imagenet`` (or a checkpoint with its
    source head). With random weights it runs but distils noise, which is no LwF baseline.
    """

    RULES = {
        "weight": non_negative("regularizer.weight"),
        "temperature": positive("regularizer.temperature"),
    }

    def __init__(self, weight: float = 1.0, temperature: float = 2.0) -> None:
        super().__init__()
        check(self.RULES, weight=weight, temperature=temperature)
        self.weight, self.temperature = float(weight), float(temperature)
        self.teacher: nn.Module | None = None
        self.old_head: nn.Module | None = None

    def attach(self, backbone: nn.Module, head: nn.Module, source_classifier: nn.Module) -> None:
        source_classifier = require_source_classifier("LwF", source_classifier)
        self.old_head = source_head(head, source_classifier)
        self.teacher = frozen(
            nn.Sequential(copy.deepcopy(backbone), *source_head(head, source_classifier))
        )

    def train(self, mode: bool = True) -> LearningWithoutForgetting:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def forward(self, ce_loss: Tensor, step: StepTensors) -> tuple[Tensor, dict[str, Tensor]]:
        if self.teacher is None or self.old_head is None:
            raise RuntimeError("LearningWithoutForgetting.attach must run before the first step")
        # Also here, not only in train(): some callers set submodules' ``.training`` directly
        # (Lightning restores saved flags that way); a walk over the modules costs nothing.
        self.teacher.eval()
        with torch.no_grad():
            target = at_least_float32(self.teacher(step.inputs))
        old_logits = at_least_float32(self.old_head(step.features))
        t = self.temperature
        kl = F.kl_div(
            F.log_softmax(old_logits / t, dim=-1),
            F.log_softmax(target / t, dim=-1),
            reduction="batchmean",
            log_target=True,
        )
        term = self.weight * kl
        agreement = (old_logits.argmax(-1) == target.argmax(-1)).float().mean()
        return ce_loss + term, {
            names.TRAIN_REG_LOSS: term.detach(),
            "lwf/kl": kl.detach(),
            "lwf/agreement": agreement.detach(),
        }
