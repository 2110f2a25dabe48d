"""What the regularizers that use the source model share (LwF, JointTrain, DELTA, Co-Tuning)."""

from __future__ import annotations

import copy

from torch import nn

from ptr_lightning.core.errors import ConfigError


def require_source_classifier(method: str, source_classifier: nn.Module | None) -> nn.Module:
    """``source_classifier``, or a :class:`ConfigError` saying where it comes from."""
    if source_classifier is None:
        raise ConfigError(
            f"{method} needs the pre-trained model's own classifier (source_classifier); "
            "build the model with model.weights=imagenet or a checkpoint with its source head"
        )
    return source_classifier


def last_linear_outputs(head: nn.Module) -> int:
    """The number of classes ``head`` predicts (its last Linear layer's outputs)."""
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"the head {type(head).__name__} has no Linear layer")
    return linears[-1].out_features


def source_head(head: nn.Module, source_classifier: nn.Module) -> nn.Sequential:
    """A copy of the source model's path from the feature tensor to the source classes: the
    head's modules before its last Linear layer (VGG's dropout), which belong to the source
    path too, then the source classifier that the new classifier replaced. Trainable;
    :func:`frozen` makes a fixed copy of it."""
    between = list(head.children())[:-1] if isinstance(head, nn.Sequential) else []
    path = nn.Sequential(*copy.deepcopy(between), copy.deepcopy(source_classifier))
    return path.requires_grad_(True)


def frozen(module: nn.Module) -> nn.Module:
    """``module`` with ``requires_grad=False`` and in eval mode (dropout off, BatchNorm with the
    source's statistics). Its owner keeps it in eval mode whatever ``.train()`` is called with."""
    return module.requires_grad_(False).eval()
