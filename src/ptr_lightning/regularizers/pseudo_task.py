"""PtR and its zero-target ablation FNP, as regularizer modules."""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor

from ptr_lightning import names
from ptr_lightning.callbacks import PseudoTaskSwitch
from ptr_lightning.ptr import LOSS_RULE, MEAN_RULE, RATIO_RULE, pseudo_task_loss
from ptr_lightning.regularizers.base import Regularizer, StepTensors
from ptr_lightning.settings import check, non_negative


class PseudoTask(Regularizer):
    """Pseudo-task Regularization (Zhong & Maki, CVPR 2020, Algorithm 1).

    ``L = L_ce + w * f_reg(rep, t)``, ``t ~ Uniform[0, 2m)`` drawn fresh every batch,
    ``w = mean_j ||dL_ce/drep_j|| / (mean_j ||dL_ptr/drep_j|| * R)`` recomputed every batch;
    see :func:`ptr_lightning.ptr.pseudo_task_loss`. Gated: its :class:`PseudoTaskSwitch` turns
    it on once the epoch-mean training CE < T.

    The targets come from a generator of their own (seeded with ``seed``), so drawing them does
    not shift the random stream that dropout and augmentation use: FNP, PtR and plain
    fine-tuning with one seed see the same dropout masks until their weights differ.
    """

    gated = True
    RULES = {
        "R": RATIO_RULE,
        "m": MEAN_RULE,
        "T": non_negative("regularizer.T", " (the epoch-mean CE that switches it on)"),
        "loss": LOSS_RULE,
    }

    def __init__(
        self, R: float, m: float = 1.0, T: float = 1.0, loss: str = "smooth_l1", seed: int = 0
    ) -> None:
        super().__init__()
        check(self.RULES, R=R, m=m, T=T, loss=loss)
        self.R, self.m, self.T = float(R), float(m), float(T)
        self.loss, self.seed = loss, int(seed)
        self._generator: torch.Generator | None = None
        self._pending_generator_state: Tensor | None = None

    def callbacks(self) -> list[L.Callback]:
        return [PseudoTaskSwitch(threshold=self.T)]

    def targets(self, features: Tensor) -> Tensor | None:
        """Targets for this batch; ``None`` lets :func:`pseudo_task_loss` draw Uniform[0, 2m)."""
        return None

    def generator(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(self.stream_seed())
            if self._pending_generator_state is not None:
                self._generator.set_state(self._pending_generator_state)
                self._pending_generator_state = None
        return self._generator

    def stream_seed(self) -> int:
        """A seed of its own, derived from ``seed`` and the rank: not the stream that the global
        generator (seeded with ``seed``) uses for augmentation, and different on every rank."""
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        return int(np.random.SeedSequence([self.seed, 0x505452, rank]).generate_state(1)[0])

    # The generator's state travels with the switch in the module's state_dict (so in every
    # checkpoint) as a tensor, empty before the first draw, and is applied when the generator
    # is next made, on whatever device the features are then on.
    def get_extra_state(self) -> dict[str, Any]:
        generator = torch.empty(0, dtype=torch.uint8)
        if self._generator is not None:
            generator = self._generator.get_state()
        return {"active": self.active, "switch_epoch": self.switch_epoch, "generator": generator}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.active, self.switch_epoch = bool(state["active"]), state["switch_epoch"]
        self._generator = None
        self._pending_generator_state = state["generator"] if state["generator"].numel() else None

    def forward(self, ce_loss: Tensor, step: StepTensors) -> tuple[Tensor, dict[str, Tensor]]:
        if not self.active:
            return ce_loss, {}
        features = step.features
        total, stats = pseudo_task_loss(
            features,
            ce_loss,
            R=self.R,
            m=self.m,
            loss=self.loss,
            targets=self.targets(features),
            generator=self.generator(features.device),
            reduce=self.reduce,
        )
        return total, {
            names.TRAIN_PTR_LOSS: stats["ptr_loss"],
            names.PTR_W: stats["w"],
            names.PTR_G_CE: stats["g_ce"],
            names.PTR_G_PTR: stats["g_ptr"],
        }


class FeatureNormPenalty(PseudoTask):
    """FNP: PtR's balancing with targets 0, ``L = L_ce + w * f_reg(rep, 0)``.

    The paper's ablation (Section 2.3, Tables 2-5): the same gradient-norm balancing as PtR but
    a static target, so the regularizing gradient has lower variance. ``m`` is unused.
    """

    def callbacks(self) -> list[L.Callback]:
        return [PseudoTaskSwitch(threshold=self.T)]

    def targets(self, features: Tensor) -> Tensor:
        return torch.zeros(features.shape, device=features.device, dtype=torch.float32)
