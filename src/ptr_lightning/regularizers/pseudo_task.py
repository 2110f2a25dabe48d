"""PtR, its variants and its zero-target ablation FNP, as regularizer modules."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from ptr_lightning.core import names
from ptr_lightning.core.settings import check, non_negative
from ptr_lightning.core.switch_rules import SWITCH_RULE
from ptr_lightning.ptr import (
    BALANCE_RULE,
    LOSS_RULE,
    M_MODE_RULE,
    M_MODES,
    MEAN_RULE,
    PULL_SHARES,
    RATIO_RULE,
    SATURATION,
    TARGETS,
    TARGETS_RULE,
    pseudo_task_loss,
    saturated_fraction,
    scaled_by_feature_mean,
)
from ptr_lightning.regularizers.base import Regularizer, StepTensors

if TYPE_CHECKING:
    import lightning as L


class PseudoTask(Regularizer):
    """Pseudo-task Regularization (Zhong & Maki, CVPR 2020, Algorithm 1).

    ``L = L_ce + w * f_reg(rep, t)``, ``t ~ Uniform[0, 2m)`` drawn fresh every batch,
    ``w = mean_j ||dL_ce/drep_j|| / (mean_j ||dL_ptr/drep_j|| * R)`` recomputed every batch;
    see :func:`ptr_lightning.ptr.pseudo_task_loss`. Gated: a switch callback turns it on once
    the epoch-mean training CE < T.

    The paper's open choices, each a config key (defaults: the paper's reading):

    * ``targets`` (:data:`ptr.TARGETS`): ``uniform`` per element, ``uniform_instance`` (one
      value per instance), ``constant`` (``t = m``), ``centred`` (``t = rep + U(-m, m)``),
      ``zero`` (FNP);
    * ``m_mode`` (:data:`ptr.M_MODES`): ``absolute``, or ``features``: ``m`` x the mean of the
      feature tensor over the epoch that ended with the switch-on (measured while off, kept
      in the checkpoint; ``ptr/m`` logs the m in use);
    * ``balance`` (:data:`ptr.BALANCES`): mean per-instance gradient norms at the
      ``features`` (the paper), norms of the ``batch``-summed gradients there, or over the
      backbone's ``parameters`` (needs :meth:`attach`);
    * ``switch`` (:data:`switches.SWITCHES`): ``latch`` (the paper), ``epoch`` (re-decided
      every epoch) or ``lr_drop`` (on from the first learning-rate reduction).

    On telemetry steps it adds ``ptr/pull_frac`` (:data:`ptr.PULL_SHARES`) and, for SML1,
    ``ptr/linear_frac``.

    The targets come from a generator of their own (seeded with ``seed``), so drawing them does
    not shift the random stream that dropout and augmentation use: FNP, PtR and plain
    fine-tuning with one seed see the same dropout masks until their weights differ.
    """

    gated = True
    feature_term = True
    RULES = {
        "R": RATIO_RULE,
        "m": MEAN_RULE,
        "T": non_negative("regularizer.T", " (the epoch-mean CE that switches it on)"),
        "loss": LOSS_RULE,
        "targets": TARGETS_RULE,
        "m_mode": M_MODE_RULE,
        "balance": BALANCE_RULE,
        "switch": SWITCH_RULE,
    }

    def __init__(
        self,
        R: float,
        m: float = 1.0,
        T: float = 1.0,
        loss: str = "smooth_l1",
        seed: int = 0,
        targets: str = "uniform",
        m_mode: str = "absolute",
        balance: str = "features",
        switch: str = "latch",
    ) -> None:
        super().__init__()
        check(
            self.RULES,
            R=R,
            m=m,
            T=T,
            loss=loss,
            targets=targets,
            m_mode=m_mode,
            balance=balance,
            switch=switch,
        )
        self.R, self.m, self.T = float(R), float(m), float(T)
        self.loss, self.seed = loss, int(seed)
        self.targets, self.m_mode, self.balance, self.switch_rule = targets, m_mode, balance, switch
        # Only m_mode=features reads the feature mean; other modes skip its per-step reduction.
        self.measures_features = M_MODES[m_mode] is scaled_by_feature_mean
        self._generator: torch.Generator | None = None
        self._pending_generator_state: Tensor | None = None
        # The feature tensor's mean while off, over the current epoch (sum of batch means x
        # batch size, and the count), and its value fixed at the first switch-on.
        self._feature_sum: Tensor | None = None
        self._feature_count = 0
        self.feature_mean: float | None = None
        self._backbone_parameters: Callable[[], Sequence[Tensor]] | None = None

    def callbacks(self) -> list[L.Callback]:
        # Here, not at the top: checking the settings must not wait for Lightning to import.
        from ptr_lightning.regularizers.switches import SWITCHES

        return [SWITCHES[self.switch_rule](threshold=self.T)]

    def attach(self, backbone: nn.Module, head: nn.Module, source_classifier: nn.Module) -> None:
        # A getter, not a list or a submodule: the parameters stay the LightningModule's (not
        # in this module's state_dict), and are looked up when used.
        self._backbone_parameters = lambda: [p for p in backbone.parameters() if p.requires_grad]

    @property
    def current_m(self) -> float:
        """The m the targets use now (``ptr/m``)."""
        return M_MODES[self.m_mode](self.m, self.feature_mean)

    def switch(self, on: bool, epoch: int) -> None:
        if on and self.feature_mean is None:
            self.feature_mean = self.measured_feature_mean()
        super().switch(on, epoch)
        self._feature_sum, self._feature_count = None, 0  # the next epoch is measured afresh

    def measured_feature_mean(self) -> float | None:
        """The feature tensor's mean over the steps since the last switch decision (the mean
        over data-parallel ranks), or ``None`` if there were none."""
        if self._feature_sum is None or self._feature_count == 0:
            return None
        mean = self._feature_sum / self._feature_count
        return float(self.reduce(mean) if self.reduce is not None else mean)

    def observe(self, features: Tensor) -> None:
        batch_sum = features.detach().float().mean() * features.shape[0]
        self._feature_sum = (
            batch_sum if self._feature_sum is None else self._feature_sum + batch_sum
        )
        self._feature_count += features.shape[0]

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
    # is next made, on whatever device the features are then on. A state restored but not yet
    # applied (no draw since the resume: the pseudo-task was off) is saved as it was restored.
    def get_extra_state(self) -> dict[str, Any]:
        generator = torch.empty(0, dtype=torch.uint8)
        if self._generator is not None:
            generator = self._generator.get_state()
        elif self._pending_generator_state is not None:
            generator = self._pending_generator_state
        return {
            "active": self.active,
            "switch_epoch": self.switch_epoch,
            "generator": generator,
            "feature_mean": self.feature_mean,
            "feature_sum": self._feature_sum,
            "feature_count": self._feature_count,
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.active, self.switch_epoch = bool(state["active"]), state["switch_epoch"]
        self._generator = None
        self._pending_generator_state = state["generator"] if state["generator"].numel() else None
        # Checkpoints written before m_mode existed have none of these.
        self.feature_mean = state.get("feature_mean")
        self._feature_sum = state.get("feature_sum")
        self._feature_count = int(state.get("feature_count", 0))

    def forward(self, ce_loss: Tensor, step: StepTensors) -> tuple[Tensor, dict[str, Any]]:
        features = step.features
        if not self.active:
            if self.measures_features:
                self.observe(features)
            return ce_loss, {}
        m = self.current_m
        targets = TARGETS[self.targets](features, m, self.generator(features.device))
        total, stats = pseudo_task_loss(
            features,
            ce_loss,
            R=self.R,
            loss=self.loss,
            targets=targets,
            reduce=self.reduce,
            balance=self.balance,
            parameters=self.backbone_parameters(),
        )
        out = {
            names.TRAIN_PTR_LOSS: stats["ptr_loss"],
            names.PTR_W: stats["w"],
            names.PTR_G_CE: stats["g_ce"],
            names.PTR_G_PTR: stats["g_ptr"],
            names.PTR_M: m,
        }
        if step.measure:
            out[names.PTR_PULL_FRAC] = PULL_SHARES[self.targets](features, m, self.loss)
            if self.loss in SATURATION:
                out[names.PTR_LINEAR_FRAC] = saturated_fraction(
                    features, targets, SATURATION[self.loss]
                )
        return total, out

    def backbone_parameters(self) -> Sequence[Tensor] | None:
        return self._backbone_parameters() if self._backbone_parameters is not None else None


class FeatureNormPenalty(PseudoTask):
    """FNP: PtR's balancing with targets 0, ``L = L_ce + w * f_reg(rep, 0)``.

    The paper's ablation (Section 2.3, Tables 2-5): the same gradient-norm balancing as PtR but
    a static target, so the regularizing gradient has lower variance. Exactly
    ``PseudoTask(targets="zero")``; ``m`` is unused. The fixed-weight penalty of the paper's
    reference [10] is :class:`~ptr_lightning.regularizers.FeatureNorm`.
    """

    def __init__(self, R: float, m: float = 0.0, **settings: Any) -> None:
        """``settings``: ``T``, ``loss``, ``seed``, ``balance``, ``switch``, as for PtR."""
        super().__init__(R, m, targets="zero", **settings)
