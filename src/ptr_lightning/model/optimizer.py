"""The optimizer of a run: SGD with momentum (the paper's), with its settings checked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ptr_lightning.core.settings import check, fraction, non_negative, positive


@dataclass(frozen=True)
class OptimizerSettings:
    """SGD with momentum (the paper's optimizer); the new head learns at ``lr * head_lr_mult``."""

    lr: float
    momentum: float = 0.9
    weight_decay: float = 0.0
    head_lr_mult: float = 1.0

    RULES: ClassVar = {
        "lr": positive("model.lr"),
        "momentum": fraction("optimizer.momentum", low_closed=True),
        "weight_decay": non_negative("model.weight_decay"),
        "head_lr_mult": positive("model.head_lr_mult"),
    }

    def __post_init__(self) -> None:
        check(
            self.RULES,
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            head_lr_mult=self.head_lr_mult,
        )
