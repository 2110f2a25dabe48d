"""The optimizer of a run and its parameter groups, with their settings checked.

The optimizer is ``optimizer=sgd`` (the paper's: momentum 0.9) or ``optimizer=adamw``, each a
torch optimizer instantiated from its config; the learning rates and the weight decay of the
parameter groups come from the model's config: the backbone at ``model.lr`` (or, with
``model.layer_decay``, each of its layers at a decayed rate), the new head at
``model.lr x model.head_lr_mult``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.optim import Optimizer

from ptr_lightning.core.errors import ConfigError
from ptr_lightning.core.settings import Rule, check, fraction, non_negative, numbers, positive

# Keys of an optimizer config that are not arguments of the optimizer.
NOT_ARGUMENTS = ("lr_from_scratch",)
# Checked where an optimizer config has them; the optimizer checks the rest itself.
ARGUMENT_RULES = {
    "momentum": fraction("optimizer.momentum", low_closed=True),
    "betas": numbers("optimizer.betas", 2, "two numbers in [0, 1)", lambda b: 0 <= b < 1),
    "eps": positive("optimizer.eps"),
}
LAYER_DECAY_RULE = Rule(
    "model.layer_decay",
    lambda v: v is None or (isinstance(v, int | float) and not isinstance(v, bool) and 0 < v <= 1),
    "in (0, 1], or null for one rate over the whole backbone",
    kind="any",
)


def optimizer_arguments(node: DictConfig) -> DictConfig:
    """The ``optimizer`` config without its non-argument keys, each known argument checked."""
    for key, rule in ARGUMENT_RULES.items():
        if key in node:
            rule.check(node[key])
    return OmegaConf.masked_copy(node, [key for key in node if key not in NOT_ARGUMENTS])


@dataclass(frozen=True)
class OptimizerSettings:
    """How the parameter groups are made (rates, weight decay) and the optimizer ``build``
    (a partial of a torch optimizer, called with the groups, ``lr`` and ``weight_decay``)."""

    lr: float
    weight_decay: float = 0.0
    head_lr_mult: float = 1.0
    layer_decay: float | None = None
    build: Callable[..., Optimizer] = field(
        default=partial(torch.optim.SGD, momentum=0.9), compare=False
    )

    RULES: ClassVar = {
        "lr": positive("model.lr"),
        "weight_decay": non_negative("model.weight_decay"),
        "head_lr_mult": positive("model.head_lr_mult"),
        "layer_decay": LAYER_DECAY_RULE,
    }

    def __post_init__(self) -> None:
        check(
            self.RULES,
            lr=self.lr,
            weight_decay=self.weight_decay,
            head_lr_mult=self.head_lr_mult,
            layer_decay=self.layer_decay,
        )
        try:  # a key the optimizer does not take fails now, not when training starts
            self.build([torch.zeros(1, requires_grad=True)], lr=self.lr, weight_decay=0.0)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"optimizer: {err} (the optimizer config's keys)") from None


def parameter_groups(
    settings: OptimizerSettings,
    backbone: nn.Module,
    head: nn.Module,
    extra: list[nn.Parameter],
    depths: Mapping[str, int] | None = None,
) -> list[dict[str, Any]]:
    """The optimizer's parameter groups, each named (``LearningRateMonitor`` logs
    ``lr/<name>``): the backbone at ``lr`` (with ``depths``, each parameter's depth below the
    head, the layer at depth ``d`` at ``lr x layer_decay^d``, named ``backbone.depth<d>``; depth
    0 is ``backbone``), the head at ``lr x head_lr_mult``, and ``extra`` (a regularizer's own
    trainable parts, LwF's old-task head) like the head."""
    lr, head_lr = settings.lr, settings.lr * settings.head_lr_mult
    if depths is None or settings.layer_decay is None:
        groups = [{"name": "backbone", "params": list(backbone.parameters()), "lr": lr}]
    else:
        by_depth: dict[int, list[nn.Parameter]] = {}
        for name, parameter in backbone.named_parameters():
            by_depth.setdefault(depths[name], []).append(parameter)
        groups = [
            {
                "name": f"backbone.depth{depth}" if depth else "backbone",
                "params": params,
                "lr": lr * math.pow(settings.layer_decay, depth),
            }
            for depth, params in sorted(by_depth.items(), reverse=True)
        ]
    groups.append({"name": "head", "params": list(head.parameters()), "lr": head_lr})
    if extra:
        groups.append({"name": "regularizer", "params": extra, "lr": head_lr})
    return groups
