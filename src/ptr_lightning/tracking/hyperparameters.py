"""The hyper-parameters every logger gets when training starts: the resolved config and the
model's parameter counts."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn


def parameter_counts(module: nn.Module) -> dict[str, int]:
    """Parameters of the model (total, trainable) and of each top-level part with any."""
    counts = {
        "total": sum(p.numel() for p in module.parameters()),
        "trainable": sum(p.numel() for p in module.parameters() if p.requires_grad),
    }
    for name, child in module.named_children():
        n = sum(p.numel() for p in child.parameters())
        if n:
            counts[name] = n
    return counts


def hyperparameters(cfg: DictConfig, module: nn.Module) -> dict[str, Any]:
    return {**OmegaConf.to_container(cfg, resolve=True), "params": parameter_counts(module)}
